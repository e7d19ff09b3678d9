//! Render part of a `.gsi` file into a caller-owned buffer with a row stride, as an image
//! viewer does for a zoomed tile: `cargo run --example render_into_buffer -- IN.gsi`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args()
        .nth(1)
        .ok_or("usage: render_into_buffer IN.gsi")?;
    let limits = gsimg::Limits::default();
    let file = gsimg::read(&std::fs::read(&input)?, &limits)?;

    // The whole picture at 4× is the virtual canvas; render only a 256×256 window of it. The
    // window is bit-for-bit the same as that crop of the full render.
    let view = gsimg::Viewport::scaled(file.image.width(), file.image.height(), 4.0)?;
    let region = gsimg::Region {
        x: view.width / 2,
        y: view.height / 2,
        width: 256.min(view.width - view.width / 2),
        height: 256.min(view.height - view.height / 2),
    };
    let view = view.with_region(region);
    let frame: gsimg::Frame<u8> = gsimg::render_cpu(&file.image, &view, &limits)?;

    // Copy the rows into the caller's buffer: 4 bytes per pixel, rows 1024 bytes apart. Pictures
    // without alpha or colour are expanded here (the frame holds the picture's own channels).
    let stride = 1024;
    let mut buffer = vec![0u8; stride * region.height as usize];
    for (y, row) in frame
        .data
        .chunks_exact(frame.width as usize * frame.channels())
        .enumerate()
    {
        let out = &mut buffer[y * stride..][..frame.width as usize * 4];
        for (px, o) in row
            .chunks_exact(frame.channels())
            .zip(out.chunks_exact_mut(4))
        {
            let (rgb, a) = match *px {
                [v] => ([v; 3], 255),
                [v, a] => ([v; 3], a),
                [r, g, b] => ([r, g, b], 255),
                [r, g, b, a] => ([r, g, b], a),
                _ => unreachable!("1 to 4 channels"),
            };
            o.copy_from_slice(&[rgb[0], rgb[1], rgb[2], a]);
        }
    }
    println!(
        "rendered {}x{} pixels at ({}, {}) of a {}x{} view",
        region.width, region.height, region.x, region.y, view.width, view.height
    );
    Ok(())
}
