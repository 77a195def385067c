//! `eval`'s confusion heatmap and its most confident mistakes; a run's augmented samples.

use super::*;

pub(super) const CELL: i32 = 62;
pub(super) const GRID_LEFT: i32 = 190;
pub(super) const GRID_TOP: i32 = 110;

pub fn confusion(
    dir: &Path,
    title: &str,
    confusion: &[[u64; 10]; 10],
    names: &[&str; 10],
) -> Result<Vec<PathBuf>, String> {
    let size = (
        (GRID_LEFT + 10 * CELL + 40) as u32,
        (GRID_TOP + 10 * CELL + 40) as u32,
    );
    render!(
        &dir.join("confusion"),
        size,
        draw_confusion,
        title,
        confusion,
        names
    )
}

pub(super) fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    confusion: &[[u64; 10]; 10],
    names: &[&str; 10],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let text = |s: &str, (x, y): (i32, i32), size: u32, color: &RGBColor| {
        root.draw(&Text::new(
            s.to_string(),
            (x, y),
            (SANS, size).into_font().color(color),
        ))
        .map_err(err)
    };
    text(title, (20, 16), 22, &BLACK)?;
    text(
        "predicted class",
        (GRID_LEFT + 4 * CELL, GRID_TOP - 58),
        17,
        &BLACK,
    )?;
    text("true class", (20, GRID_TOP - 30), 17, &BLACK)?;
    for (c, name) in names.iter().enumerate() {
        let c = c as i32;
        text(
            &c.to_string(),
            (GRID_LEFT + c * CELL + CELL / 2 - 5, GRID_TOP - 26),
            16,
            &BLACK,
        )?;
        let row_label = if *name == c.to_string() {
            name.to_string()
        } else {
            format!("{c} {name}")
        };
        text(
            &row_label,
            (20, GRID_TOP + c * CELL + CELL / 2 - 8),
            16,
            &BLACK,
        )?;
    }
    for (t, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (p, &n) in row.iter().enumerate() {
            let share = n as f64 / total;
            // White to the palette's blue, by the share of the true class's images.
            let mix = |w: u8, c: u8| (w as f64 + (c as f64 - w as f64) * share.sqrt()) as u8;
            let fill = RGBColor(mix(255, 31), mix(255, 119), mix(255, 180));
            let (x, y) = (GRID_LEFT + p as i32 * CELL, GRID_TOP + t as i32 * CELL);
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                fill.filled(),
            ))
            .map_err(err)?;
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                RGBColor(220, 220, 220).stroke_width(1),
            ))
            .map_err(err)?;
            if n > 0 {
                let ink = if share > 0.4 { WHITE } else { BLACK };
                let label = n.to_string();
                let dx = 4 * label.len() as i32;
                text(&label, (x + CELL / 2 - dx, y + CELL / 2 - 8), 15, &ink)?;
            }
        }
    }
    Ok(())
}

pub(super) const TILE_SCALE: i32 = 4;
pub(super) const TILE_W: i32 = 170;
pub(super) const SIDE: i32 = IMAGE_SIDE as i32;
pub(super) const TILE_H: i32 = SIDE * TILE_SCALE + 34;
pub(super) const TILES_PER_ROW: usize = 5;

pub fn mistakes(
    dir: &Path,
    mistakes: &[crate::train::evaluate::Mistake],
    images: &[u8],
    names: &[&str; 10],
) -> Result<Vec<PathBuf>, String> {
    fonts();
    let rows = mistakes.len().div_ceil(TILES_PER_ROW).max(1) as i32;
    let size = (
        (TILE_W * TILES_PER_ROW as i32 + 20) as u32,
        (60 + rows * TILE_H) as u32,
    );
    let path = dir.join("mistakes.png");
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let font = |s: u32| (SANS, s).into_font().color(&BLACK);
        let title = format!(
            "The {} most confident mistakes: true → predicted (probability)",
            mistakes.len()
        );
        root.draw(&Text::new(title, (12, 14), font(18)))
            .map_err(err)?;
        for (k, m) in mistakes.iter().enumerate() {
            let x0 = 10 + (k % TILES_PER_ROW) as i32 * TILE_W;
            let y0 = 50 + (k / TILES_PER_ROW) as i32 * TILE_H;
            let left = x0 + (TILE_W - SIDE * TILE_SCALE) / 2;
            let pixels = &images[m.index * IMAGE_PIXELS..(m.index + 1) * IMAGE_PIXELS];
            digit(&root, pixels, left, y0)?;
            let caption = format!(
                "{} → {} ({:.2})",
                names[m.label], names[m.predicted], m.probability
            );
            root.draw(&Text::new(
                caption,
                (x0 + 4, y0 + SIDE * TILE_SCALE + 6),
                font(14),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_atomic(&path, &encode_png(&buf, size)?).map_err(err)?;
    Ok(vec![path])
}

/// A 28×28 image at (`left`, `top`), dark ink on white paper as a digit is drawn.
fn digit<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pixels: &[u8],
    left: i32,
    top: i32,
) -> Result<(), String> {
    for (i, &v) in pixels.iter().enumerate() {
        let ink = 255 - v;
        let (px, py) = (
            left + (i % IMAGE_SIDE) as i32 * TILE_SCALE,
            top + (i / IMAGE_SIDE) as i32 * TILE_SCALE,
        );
        root.draw(&Rectangle::new(
            [(px, py), (px + TILE_SCALE, py + TILE_SCALE)],
            RGBColor(ink, ink, ink).filled(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Images shown by `augmented.png`, and the draws of each.
const AUGMENTED_IMAGES: usize = 6;
const AUGMENTED_DRAWS: usize = 3;

pub fn augmented(
    dir: &Path,
    images: &[u8],
    augment: crate::config::Augment,
    seed: u64,
) -> Result<Vec<PathBuf>, String> {
    fonts();
    let shown = AUGMENTED_IMAGES.min(images.len() / IMAGE_PIXELS);
    let idx: Vec<u32> = (0..shown as u32).collect();
    let draws: Vec<Vec<u8>> = (0..AUGMENTED_DRAWS)
        .map(|d| {
            let seed = crate::data::batcher::augment_seed(seed, d);
            crate::data::augment::augment_batch(images, &idx, augment, seed)
        })
        .collect();
    let cell = SIDE * TILE_SCALE + 12;
    let size = (
        (130 + shown as i32 * cell) as u32,
        (60 + (1 + AUGMENTED_DRAWS) as i32 * cell) as u32,
    );
    let path = dir.join("augmented.png");
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let font = |s: u32| (SANS, s).into_font().color(&BLACK);
        let title = format!(
            "Training images as drawn by --augment {augment}: as they are, then {AUGMENTED_DRAWS} draws"
        );
        root.draw(&Text::new(title, (12, 14), font(18)))
            .map_err(err)?;
        let rows = std::iter::once(("original", &images[..shown * IMAGE_PIXELS]))
            .chain(draws.iter().map(|d| ("augmented", &d[..])));
        for (r, (label, row)) in rows.enumerate() {
            let top = 50 + r as i32 * cell;
            root.draw(&Text::new(label, (12, top + cell / 2 - 10), font(15)))
                .map_err(err)?;
            for (k, pixels) in row.chunks_exact(IMAGE_PIXELS).enumerate() {
                digit(&root, pixels, 120 + k as i32 * cell, top)?;
            }
        }
        root.present().map_err(err)?;
    }
    write_atomic(&path, &encode_png(&buf, size)?).map_err(err)?;
    Ok(vec![path])
}
