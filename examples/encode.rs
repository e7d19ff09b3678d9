//! Encode a picture into a `.gsi` file: `cargo run --release --example encode -- IN.png OUT.gsi 50`
//! (quality 1 to 100).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, quality] = args.as_slice() else {
        return Err("usage: encode IN.png OUT.gsi QUALITY".into());
    };
    let limits = gsimg::Limits::default();

    // Any picture the `image` crate reads; EXIF orientation is applied, the ICC profile kept.
    let loaded = gsimg::load_image(&std::fs::read(input)?, &limits)?;

    // The analytic encoder needs no model; `NetworkOptions` builds the neural encoder from a
    // model file and an ONNX Runtime library.
    let options = gsimg::AnalyticOptions::with_quality(quality.parse()?)?;
    let encoded = gsimg::encode_analytic(&loaded.pixels, &options)?;

    std::fs::write(output, &encoded.bytes)?;
    println!(
        "{input}: {} Gaussians, {} bytes",
        encoded.image.gaussians().len(),
        encoded.bytes.len()
    );
    Ok(())
}
