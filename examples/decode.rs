//! Decode a `.gsi` file to a PNG at any width: `cargo run --example decode -- IN.gsi OUT.png 1920`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, width] = args.as_slice() else {
        return Err("usage: decode IN.gsi OUT.png WIDTH".into());
    };
    let width: u32 = width.parse()?;

    // Limits bound what a file can make the decoder allocate; the defaults suit untrusted files.
    let limits = gsimg::Limits::default();
    let file = gsimg::read(&std::fs::read(input)?, &limits)?;
    let (w, h) = (file.image.width(), file.image.height());

    // The output height follows the aspect ratio.
    let height = ((h as f64 * width as f64 / w as f64).round() as u32).max(1);
    let view = gsimg::Viewport::full(width, height);
    let frame: gsimg::Frame<u8> = gsimg::render_cpu(&file.image, &view, &limits)?;

    // Frame samples follow the picture's channel layout (gray, gray+alpha, RGB or RGBA).
    let color = match file.image.layout() {
        gsimg::ChannelLayout::Gray => image::ExtendedColorType::L8,
        gsimg::ChannelLayout::GrayAlpha => image::ExtendedColorType::La8,
        gsimg::ChannelLayout::Rgb => image::ExtendedColorType::Rgb8,
        gsimg::ChannelLayout::Rgba => image::ExtendedColorType::Rgba8,
    };
    image::save_buffer(output, &frame.data, frame.width, frame.height, color)?;
    println!("{input}: {w}x{h} native, written {width}x{height} to {output}");
    Ok(())
}
