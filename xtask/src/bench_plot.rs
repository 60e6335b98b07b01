//! PNG plots for docs/bench.md (docs/bench/*.png), drawn with plotters'
//! bitmap backend. Text goes through ab_glyph with DejaVu Sans read from the
//! Debian package fonts-dejavu-core, so no fontconfig/freetype is needed.

use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 500;

/// Registers DejaVu Sans as plotters' "sans-serif" once per process.
fn font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH)
            .map_err(|e| format!("{FONT_PATH} (Debian package fonts-dejavu-core): {e}"))?;
        // plotters keeps registered fonts for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT_PATH}: not a usable font"))
    })
    .clone()
}

/// One labelled set of samples (all runs pooled).
pub struct Samples {
    pub label: String,
    pub values: Vec<f64>,
}

/// One labelled series of points (each run), joined by a line through `line` (medians).
pub struct Points {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub line: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn err<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("plot {what}: {e:?}")
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(hi.abs() * 0.05).max(1e-3);
    (lo - span * 0.05, hi + span * 0.05)
}

/// Empirical CDF of each series: x = the measured value, y = fraction of
/// samples at or below it. Points are drawn too when a series is small.
pub fn cdf(path: &Path, title: &str, x_label: &str, series: &[Samples]) -> Result<(), String> {
    font()?;
    let all = series.iter().flat_map(|s| s.values.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return Err(format!("plot {}: no samples", path.display()));
    }
    let (lo, hi) = padded(lo, hi);
    let what = path.display().to_string();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(&what))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..1.02)
        .map_err(err(&what))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("fraction of samples <= x")
        .light_line_style(RGBColor(238, 238, 238))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err(&what))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut v = s.values.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len() as f64;
        // A step function: flat until each sample, then up by 1/n.
        let mut steps = vec![(lo, 0.0)];
        for (k, &x) in v.iter().enumerate() {
            steps.push((x, k as f64 / n));
            steps.push((x, (k + 1) as f64 / n));
        }
        steps.push((hi, 1.0));
        let label = format!("{} (n = {})", s.label, v.len());
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))
            .map_err(err(&what))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if v.len() <= 40 {
            let pts = v
                .iter()
                .enumerate()
                .map(|(k, &x)| Circle::new((x, (k + 1) as f64 / n), 3, color.filled()));
            chart.draw_series(pts).map_err(err(&what))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err(&what))?;
    root.present().map_err(err(&what))
}

/// Whole decades around `lo..hi` (both > 0), so a log axis gets labels.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.max(1e-3).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 1.01).log10().ceil());
    (lo, if hi <= lo { lo * 10.0 } else { hi })
}

/// Points (every run) and a line through the medians, per series; `log`
/// (both axes) when series differ by orders of magnitude.
pub fn xy(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Points],
    log: bool,
) -> Result<(), String> {
    font()?;
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter().chain(s.line.iter()).copied());
    let (x0, x1, y0, y1) = pts.fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), (x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if !x0.is_finite() {
        return Err(format!("plot {}: no points", path.display()));
    }
    let what = path.display().to_string();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(&what))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65);
    // The two axis kinds are different types in plotters, hence two branches.
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_label_formatter(&|x| short(*x))
                .y_label_formatter(&|y| short(*y))
                .light_line_style(RGBColor(238, 238, 238))
                .axis_desc_style(("sans-serif", 16))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err(&what))?;
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.line.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(err(&what))?
                    .label(format!("{} (median; dots: each run)", s.label))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(err(&what))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err(&what))?;
        }};
    }
    if log {
        let ((x0, x1), (y0, y1)) = (decades(x0, x1), decades(y0, y1));
        // Ticks at 1, 2, 5 x each decade: decade labels alone are too sparse.
        let ticks = |lo: f64, hi: f64| -> Vec<f64> {
            let mut v = Vec::new();
            let mut d = lo;
            while d < hi * 1.001 {
                v.extend(
                    [d, 2.0 * d, 5.0 * d]
                        .into_iter()
                        .filter(|t| *t <= hi * 1.001),
                );
                d *= 10.0;
            }
            v
        };
        let xr: LogCoord<f64> = (x0..x1).log_scale().into();
        let yr: LogCoord<f64> = (y0..y1).log_scale().into();
        draw!(builder
            .build_cartesian_2d(
                xr.with_key_points(ticks(x0, x1)),
                yr.with_key_points(ticks(y0, y1))
            )
            .map_err(err(&what))?);
    } else {
        let ((x0, x1), (y0, y1)) = (padded(x0, x1), padded(y0.min(0.0), y1));
        draw!(builder
            .build_cartesian_2d(x0..x1, y0.max(0.0)..y1)
            .map_err(err(&what))?);
    }
    root.present().map_err(err(&what))
}

/// 100, 2.5, 0.25: no trailing zeros on tick labels.
fn short(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's IHDR chunk, if `bytes` is a PNG.
    fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() < 24
            || bytes[..8] != [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]
            || &bytes[12..16] != b"IHDR"
        {
            return None;
        }
        let be =
            |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        Some((be(16), be(20)))
    }

    /// `XTASK_PLOT_KEEP=dir`: the test plots are written there and kept, to look at.
    fn temp(name: &str) -> std::path::PathBuf {
        match std::env::var_os("XTASK_PLOT_KEEP") {
            Some(dir) => std::path::PathBuf::from(dir).join(format!("{name}.png")),
            None => {
                std::env::temp_dir().join(format!("xtask-plot-{}-{name}.png", std::process::id()))
            }
        }
    }

    fn done(path: &Path) {
        if std::env::var_os("XTASK_PLOT_KEEP").is_none() {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn renders_a_cdf_as_a_png_of_the_expected_size() {
        let path = temp("cdf");
        let series = [
            Samples {
                label: "a".into(),
                values: vec![1.0, 2.0, 2.5, 3.0],
            },
            Samples {
                label: "b".into(),
                values: (0..100).map(|i| 2.0 + i as f64 / 50.0).collect(),
            },
        ];
        cdf(&path, "test CDF", "latency (ms)", &series).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        done(&path);
        assert_eq!(png_size(&bytes), Some((WIDTH, HEIGHT)));
        // A blank canvas compresses to almost nothing; text and lines do not.
        assert!(
            bytes.len() > 5_000,
            "suspiciously small PNG: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn renders_points_on_a_log_axis() {
        let path = temp("xy");
        let series = [
            Points {
                label: "echo".into(),
                points: vec![(1.0, 0.8), (10.0, 0.3), (100.0, 0.17)],
                line: vec![(1.0, 0.8), (10.0, 0.3), (100.0, 0.17)],
            },
            Points {
                label: "local".into(),
                points: vec![(1.0, 5.6), (5.0, 4.7), (10.0, 4.2)],
                line: vec![(1.0, 5.6), (5.0, 4.7), (10.0, 4.2)],
            },
        ];
        xy(
            &path,
            "test",
            "concurrent calls",
            "CPU % of one core per call",
            &series,
            true,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        done(&path);
        assert_eq!(png_size(&bytes), Some((WIDTH, HEIGHT)));
    }

    #[test]
    fn no_samples_is_an_error_not_a_panic() {
        let path = temp("empty");
        assert!(cdf(
            &path,
            "empty",
            "x",
            &[Samples {
                label: "none".into(),
                values: vec![]
            }]
        )
        .is_err());
    }
}
