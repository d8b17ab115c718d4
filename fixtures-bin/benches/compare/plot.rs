//! The plots, as SVG files (plotters), into `docs/plots/`. Text is set in DejaVu Sans, read at
//! run time (Debian's fonts-dejavu-core): without it no plot is drawn and the bench says so.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// One named series of points.
pub struct Series {
    pub name: &'static str,
    pub points: Vec<(f64, f64)>,
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (900, 600);

/// Registers the font; `Err` says why plots cannot be drawn.
pub fn init() -> Result<(), String> {
    let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e}"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{FONT}: not a font"))
}

/// Where the plots go: `docs/plots/` of the repository.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plots")
}

fn colour(i: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ][i % 5]
}

/// Empirical CDFs of latencies (ms), one panel per `(title, series)`, in a 2 × 2 grid.
pub fn cdfs(
    file: &str,
    caption: &str,
    panels: &[(String, Vec<Series>)],
) -> Result<PathBuf, String> {
    let path = dir().join(file);
    let root = SVGBackend::new(&path, (SIZE.0 * 3 / 2, SIZE.1 * 3 / 2)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(caption, ("sans-serif", 26)).map_err(err)?;
    for (area, (title, series)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(0.1, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0.01..max * 1.2).log_scale(), 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("notice latency after listen() (ms, log scale)")
            .y_desc("fraction of starts")
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, series, false)?;
    }
    root.present().map_err(err)?;
    Ok(path.clone())
}

/// Lines through `(x, y)` points, one per series.
pub fn lines(
    file: &str,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<PathBuf, String> {
    let path = dir().join(file);
    let root = SVGBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, series, true)?;
    root.present().map_err(err)?;
    Ok(path.clone())
}

/// Horizontal bars: one per `(label, value)`, the value written at its end, coloured by
/// whether the label ends in "wall" or "CPU", with a dashed line at 1 (the naive baseline).
pub fn ratios(
    file: &str,
    caption: &str,
    x_desc: &str,
    bars: &[(String, f64)],
) -> Result<PathBuf, String> {
    let path = dir().join(file);
    let root = SVGBackend::new(&path, (SIZE.0, 90 + 40 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.2;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(290)
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
        .map_err(err)?;
    // Top to bottom in the order given.
    let labels: Vec<String> = bars.iter().rev().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .y_labels(n)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    let colour_of = |label: &str| {
        if label.ends_with("CPU") {
            colour(1)
        } else {
            colour(0)
        }
    };
    for (i, (label, v)) in bars.iter().rev().enumerate() {
        let c = colour_of(label);
        chart
            .draw_series([Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                c.mix(0.85).filled(),
            )])
            .map_err(err)?;
        chart
            .draw_series([Text::new(
                format!(" {v:.2}x"),
                (*v, SegmentValue::CenterOf(i)),
                TextStyle::from(("sans-serif", 15).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )])
            .map_err(err)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            [(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(path.clone())
}

/// Each series as a line in its colour (with a dot at each point when `dots`), and the legend,
/// upper left.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    dots: bool,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        if dots {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The empirical CDF of `samples` (ms), as a step line: each sample lifts it by 1/n.
pub fn cdf_points(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| {
            let v = v.max(0.011);
            [(v, i as f64 / n), (v, (i + 1) as f64 / n)]
        })
        .collect()
}
