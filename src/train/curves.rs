//! `curves.svg`: training loss, dev loss and dev CER against epochs, drawn by hand (two panels).

use std::fmt::Write as _;
use std::path::Path;

use super::checkpoint::write_atomic;
use super::error::TrainError;
use super::trainer::EpochMetrics;

const W: f64 = 720.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// A named, coloured polyline of (epoch, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// One panel: series of (x, y) polylines with a shared y range starting at 0.
fn panel(svg: &mut String, x0: f64, title: &str, xmax: f64, series: &[Series<'_>], percent: bool) {
    let pw = W / 2.0 - PAD - 10.0;
    let ph = H - 2.0 * PAD;
    let ymax = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.05;
    let sx = |x: f64| x0 + PAD + pw * x / xmax.max(1.0);
    let sy = |y: f64| PAD + ph * (1.0 - y / ymax);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">{title}</text>"#,
        x0 + PAD + pw / 2.0,
        PAD - 20.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{PAD:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888"/>"##,
        x0 + PAD
    );
    for i in 0..=4 {
        let y = ymax * f64::from(i) / 4.0;
        let label = if percent { format!("{:.0}%", 100.0 * y) } else { format!("{y:.2}") };
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{label}</text>"#,
            x0 + PAD - 4.0,
            sy(y) + 3.0
        );
    }
    let ticks = xmax.ceil().max(1.0) as u64;
    let every = ticks.div_ceil(10).max(1);
    for e in (0..=ticks).step_by(every as usize) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{e}</text>"#,
            sx(e as f64),
            PAD + ph + 14.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">epoch</text>"#,
        x0 + PAD + pw / 2.0,
        H - 12.0
    );
    for (k, (name, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &path {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(svg, r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>"#);
        }
        let ly = PAD + 14.0 + 14.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{ly:.1}" font-size="11" fill="{color}" text-anchor="end">{name}</text>"#,
            x0 + PAD + pw - 6.0
        );
    }
}

/// Renders the curves of `metrics` as an SVG document.
pub fn render_curves(metrics: &[EpochMetrics]) -> String {
    let xmax = metrics.iter().map(|m| m.epoch as f64).fold(1.0, f64::max);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#
    );
    svg.push('\n');
    svg.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let train: Vec<(f64, f64)> = metrics.iter().map(|m| (m.epoch as f64, m.train_loss)).collect();
    let dev: Vec<(f64, f64)> = metrics.iter().map(|m| (m.epoch as f64, m.dev_loss)).collect();
    let cer: Vec<(f64, f64)> = metrics.iter().map(|m| (m.epoch as f64, m.dev_cer)).collect();
    let wer: Vec<(f64, f64)> = metrics.iter().map(|m| (m.epoch as f64, m.dev_wer)).collect();
    panel(&mut svg, 0.0, "CTC loss", xmax, &[("train", "#1f77b4", train), ("dev", "#ff7f0e", dev)], false);
    panel(
        &mut svg,
        W / 2.0,
        "dev error rate (greedy)",
        xmax,
        &[("CER", "#2ca02c", cer), ("WER", "#d62728", wer)],
        true,
    );
    svg.push_str("</svg>\n");
    svg
}

/// Writes [`render_curves`] to `path` atomically.
pub fn write_curves(path: &Path, metrics: &[EpochMetrics]) -> Result<(), TrainError> {
    write_atomic(path, render_curves(metrics).as_bytes())
}
