//! Upscale a picture with the upscale network: the network turns the picture into Gaussians,
//! which render at any size. `cargo run --release --example upscale -- IN.png OUT.png 3 MODEL.onnx`
//! (`models/upscale.onnx` in the source tree; ONNX Runtime from `ORT_DYLIB_PATH` or the system).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, scale, model] = args.as_slice() else {
        return Err("usage: upscale IN.png OUT.png SCALE MODEL.onnx".into());
    };
    let limits = gsimg::Limits::default();
    let pixels = gsimg::load_image(&std::fs::read(input)?, &limits)?.pixels;

    let encoder = gsimg::NetworkOptions {
        model: Some(model.into()),
        kind: gsimg::network::ModelKind::Upscale,
        ..Default::default()
    }
    .build()?;
    let field = encoder.gaussians(&pixels)?.image;

    let view = gsimg::Viewport::scaled(pixels.width, pixels.height, scale.parse()?)?;
    let frame: gsimg::Frame<u8> = gsimg::render_cpu(&field, &view, &limits)?;
    let color = match frame.layout {
        gsimg::ChannelLayout::Gray => image::ExtendedColorType::L8,
        gsimg::ChannelLayout::GrayAlpha => image::ExtendedColorType::La8,
        gsimg::ChannelLayout::Rgb => image::ExtendedColorType::Rgb8,
        gsimg::ChannelLayout::Rgba => image::ExtendedColorType::Rgba8,
    };
    image::save_buffer(output, &frame.data, frame.width, frame.height, color)?;
    println!(
        "{input}: {}x{} → {}x{}",
        pixels.width, pixels.height, frame.width, frame.height
    );
    Ok(())
}
