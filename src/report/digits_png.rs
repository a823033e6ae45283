//! `advmnist show`'s pictures as PNG: test digits, clean and perturbed (the study's Figure 1), with
//! the model's verdict on each, and beside them the input gradient and its sign, so a reader
//! sees where and why the gradient-sign attack pushes.
//!
//! One row per digit. Columns, left to right:
//! - the true label;
//! - `clean`: the digit as given;
//! - one column per level: the digit under gradient-sign noise (`eps=...`, the study's Eq. 1,
//!   `X' = clip(X + eps sign(dL/dX), 0, 1)`) or Gaussian noise (`sigma=...`,
//!   `X' = clip(X + sigma Z, 0, 1)`), headed by the average distortion per pixel that the
//!   column's clipped perturbation actually applies to the digits shown (section 3.2);
//! - `gradient`: `dL/dX` of the cross-entropy with the true label (the gradient FGSM uses), as a
//!   diverging heat map scaled per digit by its own max |gradient| (blue negative, white zero,
//!   red positive);
//! - `sign`: `sign(dL/dX)` in the same colours, with `sign(0) = 0` (see `attacks::fgsm`): the
//!   pattern FGSM adds, scaled by eps. For Gaussian noise it is shown for comparison: it is the
//!   direction the random noise is not aimed at.
//!
//! Under each digit: the predicted class and its softmax probability, e.g. `7 (99%)`, in red
//! when the prediction is wrong. Digits are scaled up [`SCALE`] times by nearest neighbour and
//! drawn as they are stored: 0 (background) black, 1 (ink) white.
//!
//! The figure is drawn into an RGB buffer, encoded as PNG with the `image` crate and written
//! atomically by `io_safety::write_atomic`. Everything it shows is computed beforehand by
//! `experiments::perturbed_digits` (this module never calls a model), so its bytes depend only
//! on that data, and the same data gives the same file.
//!
//! The autoencoder's picture (`show --dae`, [`render_dae_png`]) is laid out the same way: one
//! row per digit, one column per stage (clean, corrupted, rebuilt).

use crate::attacks::Noise;
use crate::data::IMAGE_SIDE;
use crate::experiments::perturbed_digits::{PerturbedDigits, ReconstructedDigits, ShowError};
use crate::io_safety::{write_atomic, WriteError};
use crate::report::plot::register_fonts;
use image::ImageEncoder;
use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::path::Path;

/// Each digit is drawn `SCALE` times its size, by nearest neighbour.
pub const SCALE: u32 = 4;
const CELL: i32 = IMAGE_SIDE as i32 * SCALE as i32; // side of one image cell in pixels
const MARGIN: i32 = 16; // around the whole figure
const LABEL_WIDTH: i32 = 56; // the true-label column
const GAP: i32 = 10; // between image columns
const SECTION_GAP: i32 = 30; // between the perturbed digits and the gradient columns
const TITLE_HEIGHT: i32 = 54; // title and subtitle
const HEADER_HEIGHT: i32 = 42; // column header and distortion line
const CAPTION_HEIGHT: i32 = 22; // verdict under each cell
const ROW_GAP: i32 = 8; // between rows
const LEGEND_HEIGHT: i32 = 74; // colour bar, its ticks and two lines of explanation
const BAR_HEIGHT: i32 = 10; // the legend's colour bar
const MIN_WIDTH: i32 = 820; // so the subtitle and legend fit even with a single level

/// Colours of the diverging map at -1 and +1: the ends of ColorBrewer's RdBu scheme
/// (one step in from the darkest), so both read clearly against white at zero. `explain`'s page
/// draws with the same two colours.
pub const DIVERGING_NEGATIVE: (u8, u8, u8) = (33, 102, 172);
/// The red end of the diverging map (see [`DIVERGING_NEGATIVE`]).
pub const DIVERGING_POSITIVE: (u8, u8, u8) = (178, 24, 43);
const WRONG: RGBColor = RGBColor(200, 0, 0);
const FRAME: RGBColor = RGBColor(170, 170, 170);
const FAINT: RGBColor = RGBColor(90, 90, 90);

/// Width and height in pixels of the figure for `digits` rows and `levels` perturbed columns.
pub fn figure_size(digits: usize, levels: usize) -> (u32, u32) {
    let image_columns = 1 + levels as i32; // clean, then one per level
    let grid = image_columns * CELL + (image_columns - 1) * GAP + SECTION_GAP + 2 * CELL + GAP;
    let width = (MARGIN + LABEL_WIDTH + grid + MARGIN).max(MIN_WIDTH);
    let row = CELL + CAPTION_HEIGHT + ROW_GAP;
    let height =
        MARGIN + TITLE_HEIGHT + HEADER_HEIGHT + digits as i32 * row + LEGEND_HEIGHT + MARGIN;
    (width as u32, height as u32)
}

/// The diverging colour of `v` in [-1, 1]: linear from white at 0 to the RdBu blue (`DIVERGING_NEGATIVE`) at -1 and
/// the RdBu red (`DIVERGING_POSITIVE`) at +1. Values outside are clamped.
pub fn diverging_colour(v: f32) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let (r, g, b) = if v < 0.0 {
        DIVERGING_NEGATIVE
    } else {
        DIVERGING_POSITIVE
    };
    let t = v.abs();
    let mix = |end: u8| (255.0 + t * (end as f32 - 255.0)).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draws one 28x28 image with its top-left corner at `(x0, y0)`, each pixel a `SCALE`-square.
fn draw_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x0, y0): (i32, i32),
    image: ArrayView2<f32>,
    colour: impl Fn(f32) -> RGBColor,
) -> DrawResult<DB> {
    for ((r, c), &v) in image.indexed_iter() {
        let rgb = colour(v);
        for dy in 0..SCALE as i32 {
            for dx in 0..SCALE as i32 {
                root.draw_pixel(
                    (
                        x0 + c as i32 * SCALE as i32 + dx,
                        y0 + r as i32 * SCALE as i32 + dy,
                    ),
                    &rgb,
                )?;
            }
        }
    }
    // A frame one pixel outside the cell, so near-white heat maps stand apart from the page.
    root.draw(&Rectangle::new(
        [(x0 - 1, y0 - 1), (x0 + CELL, y0 + CELL)],
        FRAME.stroke_width(1),
    ))
}

fn grey(v: f32) -> RGBColor {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    RGBColor(g, g, g)
}

fn text_style(size: u32, colour: RGBColor, bold: bool) -> TextStyle<'static> {
    let font = if bold {
        ("sans-serif", size, FontStyle::Bold).into_font()
    } else {
        ("sans-serif", size).into_font()
    };
    font.color(&colour).pos(Pos::new(HPos::Center, VPos::Top))
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &PerturbedDigits,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let centre = width as i32 / 2;
    let title = match fig.noise {
        Noise::Fgsm => "Gradient-sign noise (FGSM) on test digits",
        Noise::Gaussian => "Gaussian noise on test digits",
        Noise::Pgd { .. } => "Iterative gradient-sign noise (PGD) on test digits",
        Noise::ApgdCe { .. } => "Auto-PGD on cross-entropy (APGD-CE) on test digits",
        Noise::ApgdT { .. } => "Targeted Auto-PGD on the DLR loss (APGD-T) on test digits",
        Noise::Square { .. } => "The gradient-free Square attack on test digits",
    };
    root.draw_text(title, &text_style(20, BLACK, true), (centre, MARGIN))?;
    let subtitle =
        "left: true label; under each digit: predicted class (softmax confidence), red when wrong";
    root.draw_text(
        subtitle,
        &text_style(14, FAINT, false),
        (centre, MARGIN + 28),
    )?;

    let header_y = MARGIN + TITLE_HEIGHT;
    let grid_top = header_y + HEADER_HEIGHT;
    let row_height = CELL + CAPTION_HEIGHT + ROW_GAP;
    let label_x = MARGIN + LABEL_WIDTH / 2;
    let column_x = |k: usize| MARGIN + LABEL_WIDTH + k as i32 * (CELL + GAP);
    let gradient_x = column_x(fig.columns.len()) - GAP + SECTION_GAP;
    let sign_x = gradient_x + CELL + GAP;

    root.draw_text("label", &text_style(16, BLACK, true), (label_x, header_y))?;
    for (k, column) in fig.columns.iter().enumerate() {
        let x = column_x(k) + CELL / 2;
        root.draw_text(&column.header, &text_style(16, BLACK, true), (x, header_y))?;
        if let Some(d) = column.distortion {
            root.draw_text(
                &format!("distortion {d:.3}"),
                &text_style(13, FAINT, false),
                (x, header_y + 20),
            )?;
        }
    }
    root.draw_text(
        "gradient",
        &text_style(16, BLACK, true),
        (gradient_x + CELL / 2, header_y),
    )?;
    root.draw_text(
        "dL/dx, true label",
        &text_style(13, FAINT, false),
        (gradient_x + CELL / 2, header_y + 20),
    )?;
    root.draw_text(
        "sign",
        &text_style(16, BLACK, true),
        (sign_x + CELL / 2, header_y),
    )?;
    root.draw_text(
        "what FGSM adds",
        &text_style(13, FAINT, false),
        (sign_x + CELL / 2, header_y + 20),
    )?;

    for (n, &label) in fig.labels.iter().enumerate() {
        let y = grid_top + n as i32 * row_height;
        let caption_y = y + CELL + 4;
        root.draw_text(
            &label.to_string(),
            &text_style(26, BLACK, true),
            (label_x, y + CELL / 2 - 14),
        )?;
        for (k, column) in fig.columns.iter().enumerate() {
            let x = column_x(k);
            draw_cell(
                root,
                (x, y),
                column.images.slice(ndarray::s![n, 0, .., ..]),
                grey,
            )?;
            let verdict = &column.verdicts[n];
            let colour = if verdict.class == label { BLACK } else { WRONG };
            let caption = format!("{} ({:.0}%)", verdict.class, 100.0 * verdict.confidence);
            root.draw_text(
                &caption,
                &text_style(15, colour, verdict.class != label),
                (x + CELL / 2, caption_y),
            )?;
        }
        draw_cell(
            root,
            (gradient_x, y),
            fig.gradient.slice(ndarray::s![n, 0, .., ..]),
            diverging_colour,
        )?;
        let max_caption = format!("max |g| {:.1e}", fig.max_gradient[n]);
        root.draw_text(
            &max_caption,
            &text_style(13, FAINT, false),
            (gradient_x + CELL / 2, caption_y + 1),
        )?;
        draw_cell(
            root,
            (sign_x, y),
            fig.sign.slice(ndarray::s![n, 0, .., ..]),
            diverging_colour,
        )?;
    }

    // Legend: a colour bar from -1 to +1, then what the colours mean, across the full width.
    let legend_y = grid_top + fig.labels.len() as i32 * row_height + 4;
    let bar_x = MARGIN + LABEL_WIDTH;
    let bar_width = 2 * CELL;
    for i in 0..bar_width {
        let colour = diverging_colour(2.0 * i as f32 / (bar_width - 1) as f32 - 1.0);
        for dy in 0..BAR_HEIGHT {
            root.draw_pixel((bar_x + i, legend_y + dy), &colour)?;
        }
    }
    root.draw(&Rectangle::new(
        [
            (bar_x - 1, legend_y - 1),
            (bar_x + bar_width, legend_y + BAR_HEIGHT),
        ],
        FRAME.stroke_width(1),
    ))?;
    let tick_y = legend_y + BAR_HEIGHT + 2;
    root.draw_text("-1", &text_style(12, FAINT, false), (bar_x, tick_y))?;
    root.draw_text(
        "0",
        &text_style(12, FAINT, false),
        (bar_x + bar_width / 2, tick_y),
    )?;
    root.draw_text(
        "+1",
        &text_style(12, FAINT, false),
        (bar_x + bar_width, tick_y),
    )?;
    let key = "gradient and sign colours (each gradient scaled to its max |g|)";
    let left = TextStyle::from(("sans-serif", 13).into_font())
        .color(&FAINT)
        .pos(Pos::new(HPos::Left, VPos::Top));
    root.draw_text(key, &left, (bar_x + bar_width + 14, legend_y - 2))?;
    let lines = [
        "red: brightening the pixel raises the loss, so FGSM adds +eps there; blue: darkening it does (-eps);",
        "white: no effect (sign 0: FGSM leaves the pixel alone). Steps past 0 or 1 are clipped: distortion < eps.",
    ];
    for (i, line) in lines.iter().enumerate() {
        root.draw_text(line, &left, (MARGIN, tick_y + 18 + 18 * i as i32))?;
    }
    Ok(())
}

/// Refuses an output path that does not end in `.png`: the pictures are PNG images.
pub fn check_png_path(path: &Path) -> Result<(), ShowError> {
    if !path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return Err(ShowError::NotPng { path: path.into() });
    }
    Ok(())
}

/// Renders the Figure 1 picture of `digits` (made by
/// [`crate::experiments::perturbed_digits::perturbed_digits`], which checks every perturbed
/// set with [`crate::attacks::validate`]) to a PNG file at `path` (which must end in `.png`).
/// A handful of digits (e.g. the first 8 test images) makes a figure of a readable size: see
/// [`figure_size`].
pub fn render_show_png(digits: &PerturbedDigits, path: &Path) -> Result<(), ShowError> {
    check_png_path(path)?;
    register_fonts();
    let (width, height) = figure_size(digits.labels.len(), digits.columns.len() - 1);
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let draw_error = |e: &dyn std::fmt::Display| ShowError::Draw {
            path: path.into(),
            reason: e.to_string(),
        };
        draw_figure(&root, digits).map_err(|e| draw_error(&e))?;
        root.present().map_err(|e| draw_error(&e))?;
    }
    encode_and_write(&rgb, width, height, path)
}

/// Width and height in pixels of the autoencoder figure for `digits` rows and `columns` columns.
pub fn dae_figure_size(digits: usize, columns: usize) -> (u32, u32) {
    let width = (MARGIN + LABEL_WIDTH + columns as i32 * (CELL + GAP) + MARGIN).max(560);
    let height = MARGIN + TITLE_HEIGHT + HEADER_HEIGHT + digits as i32 * (CELL + ROW_GAP) + MARGIN;
    (width as u32, height as u32)
}

fn draw_dae_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &ReconstructedDigits,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let centre = width as i32 / 2;
    root.draw_text(
        "Denoising autoencoder on test digits",
        &text_style(20, BLACK, true),
        (centre, MARGIN),
    )?;
    root.draw_text(
        &format!(
            "reconstruction cross-entropy of the clean digits: {:.1} nats per image",
            fig.loss_clean
        ),
        &text_style(14, FAINT, false),
        (centre, MARGIN + 28),
    )?;
    let header_y = MARGIN + TITLE_HEIGHT;
    let grid_top = header_y + HEADER_HEIGHT;
    let column_x = |k: usize| MARGIN + LABEL_WIDTH + k as i32 * (CELL + GAP);
    root.draw_text(
        "label",
        &text_style(16, BLACK, true),
        (MARGIN + LABEL_WIDTH / 2, header_y),
    )?;
    for (k, (header, _)) in fig.columns.iter().enumerate() {
        root.draw_text(
            header,
            &text_style(14, BLACK, true),
            (column_x(k) + CELL / 2, header_y),
        )?;
    }
    for (n, &label) in fig.labels.iter().enumerate() {
        let y = grid_top + n as i32 * (CELL + ROW_GAP);
        root.draw_text(
            &label.to_string(),
            &text_style(22, BLACK, true),
            (MARGIN + LABEL_WIDTH / 2, y + CELL / 2 - 11),
        )?;
        for (k, (_, images)) in fig.columns.iter().enumerate() {
            draw_cell(
                root,
                (column_x(k), y),
                images.slice(ndarray::s![n, 0, .., ..]),
                grey,
            )?;
        }
    }
    Ok(())
}

/// Renders [`ReconstructedDigits`] as a PNG at `path` (which must end in `.png`), written
/// atomically.
pub fn render_dae_png(fig: &ReconstructedDigits, path: &Path) -> Result<(), ShowError> {
    check_png_path(path)?;
    register_fonts();
    let (width, height) = dae_figure_size(fig.labels.len(), fig.columns.len());
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let draw_error = |e: &dyn std::fmt::Display| ShowError::Draw {
            path: path.into(),
            reason: e.to_string(),
        };
        draw_dae_figure(&root, fig).map_err(|e| draw_error(&e))?;
        root.present().map_err(|e| draw_error(&e))?;
    }
    encode_and_write(&rgb, width, height, path)
}

fn encode_and_write(rgb: &[u8], width: u32, height: u32, path: &Path) -> Result<(), ShowError> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, width, height, image::ColorType::Rgb8)
        .map_err(|e| ShowError::Draw {
            path: path.into(),
            reason: format!("PNG encoding: {e}"),
        })?;
    write_atomic(path, &png).map_err(|WriteError { path, source }| ShowError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_colour_hand_worked() {
        // 0 -> white; +-1 -> the end colours; -0.5 -> halfway: 255 + 0.5 (33 - 255) = 144,
        // 255 + 0.5 (102 - 255) = 178.5 -> 179 (round half away from zero),
        // 255 + 0.5 (172 - 255) = 213.5 -> 214.
        assert_eq!(diverging_colour(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging_colour(1.0), RGBColor(178, 24, 43));
        assert_eq!(diverging_colour(-1.0), RGBColor(33, 102, 172));
        assert_eq!(diverging_colour(-0.5), RGBColor(144, 179, 214));
        assert_eq!(diverging_colour(-7.0), diverging_colour(-1.0));
    }

    #[test]
    fn figure_size_hand_worked() {
        // 3 levels: 4 image columns 4*112 + 3*10 gaps + 30 section gap + 2*112 + 10 = 742 pixels
        // of grid, plus 16 + 56 on the left and 16 on the right = 830 (above the 820 minimum).
        // Height: 16 + 54 + 42 + 8 rows of (112 + 22 + 8) + 74 + 16 = 1338.
        assert_eq!(figure_size(8, 3), (830, 1338));
        // One level would be narrower than the legend: the minimum width applies.
        assert_eq!(figure_size(1, 1).0, 820);
    }
}
