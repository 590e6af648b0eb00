//! The QR code of an `otpauth://` URI as a PNG (MFA-1): black modules on white, four pixels per
//! module and the standard four-module quiet zone, so phone cameras read it at screen sizes.

use qrcodegen::{QrCode, QrCodeEcc};

/// Pixels per module.
const SCALE: u32 = 4;
/// Quiet zone, in modules.
const BORDER: i32 = 4;

/// A PNG (8-bit greyscale) of `text` as a QR code with medium error correction; `None` when
/// the text does not fit in a QR code or the encoder fails.
#[must_use]
pub fn png(text: &str) -> Option<Vec<u8>> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let modules = code.size() + 2 * BORDER;
    let side = u32::try_from(modules).ok()? * SCALE;
    let mut pixels = Vec::with_capacity((side * side) as usize);
    for y in 0..side {
        for x in 0..side {
            let mx = i32::try_from(x / SCALE).unwrap_or(0) - BORDER;
            let my = i32::try_from(y / SCALE).unwrap_or(0) - BORDER;
            // `get_module` is false outside the symbol, which draws the quiet zone white.
            pixels.push(if code.get_module(mx, my) { 0 } else { 255 });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&pixels).ok()?;
    writer.finish().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG made by [`png`] back into text with an independent QR reader.
    pub(crate) fn decode(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_png_decodes_to_the_same_text() {
        let uri = "otpauth://totp/IncrementaCRM:ana%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=IncrementaCRM&algorithm=SHA1&digits=6&period=30";
        assert_eq!(decode(&png(uri).unwrap()), uri);
    }

    #[test]
    fn text_beyond_a_qr_code_is_an_error() {
        assert!(png(&"x".repeat(5000)).is_none());
    }
}
