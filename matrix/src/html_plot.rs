//! report.html's distribution plots: one horizontal box plot per scheduler x column lane of a
//! metric table, with every repeat drawn as a dot over it, rendered as SVG by plotters and
//! embedded as a lazily loaded `data:` image: the page stays self-contained, and a browser
//! neither builds DOM nodes for a plot nor draws one until it is scrolled to (a large report's
//! plots sit in folded sections).

use crate::render::fmt_num;
use crate::report::{MetricTable, Stat, Verdict};
use plotters::prelude::*;

const WIDTH: u32 = 760;
const LANE_H: u32 = 26;
/// Room for the x axis labels and the margins.
const FRAME_H: u32 = 48;
const LABEL_W: u32 = 250;
const WORSE: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const BETTER: RGBColor = RGBColor(0x1e, 0x84, 0x49);
const PLAIN: RGBColor = RGBColor(0x2c, 0x3e, 0x50);

fn lane_color(s: &Stat) -> RGBColor {
    let verdicts = [&s.vs_baseline, &s.vs_eevdf].map(|c| c.as_ref().map(|c| c.verdict));
    if verdicts
        .iter()
        .any(|v| matches!(v, Some(Verdict::Regression | Verdict::WorseThanEevdf)))
    {
        WORSE
    } else if verdicts
        .iter()
        .any(|v| matches!(v, Some(Verdict::Improvement | Verdict::BetterThanEevdf)))
    {
        BETTER
    } else {
        PLAIN
    }
}

/// The x range of `lanes`' samples and whiskers (Tukey's fences, 1.5 box widths past the box,
/// can reach past the samples), widened a little so nothing sits on the frame; `None` without
/// finite samples.
fn x_range(lanes: &[(String, &Stat)]) -> Option<(f64, f64)> {
    let fences = lanes.iter().flat_map(|(_, s)| {
        let q = Quartiles::new(&s.samples).values();
        [q[0] as f64, q[4] as f64]
    });
    let (lo, hi) = lanes
        .iter()
        .flat_map(|(_, s)| s.samples.iter().copied())
        .chain(fences)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

/// The plot of `t` as an `<img>` with the SVG inline in its `data:` URL; empty when it has no
/// samples. `label` names a column id the way the page shows it.
pub fn box_plot_img(t: &MetricTable, label: &dyn Fn(&str) -> String) -> String {
    let svg = box_plot(t, label);
    if !svg.starts_with("<svg") {
        return svg;
    }
    let mut url = String::with_capacity(svg.len() + svg.len() / 8);
    for c in svg.chars() {
        match c {
            // What would end the URL's fragment, an escape, or the HTML attribute.
            '%' => url.push_str("%25"),
            '#' => url.push_str("%23"),
            '"' => url.push_str("%22"),
            '&' => url.push_str("%26"),
            '\n' => url.push_str("%0A"),
            c => url.push(c),
        }
    }
    format!(
        "<img class=\"plot\" loading=\"lazy\" alt=\"box plot of {}\" src=\"data:image/svg+xml,{url}\">",
        crate::render::xml_escape(&t.metric)
    )
}

/// The plot of `t` as an `<svg>` element; empty when it has no samples. `label` names a
/// column id the way the page shows it.
pub fn box_plot(t: &MetricTable, label: &dyn Fn(&str) -> String) -> String {
    let lanes: Vec<(String, &Stat)> = t
        .rows
        .iter()
        .flat_map(|r| {
            r.stats
                .iter()
                .filter(|s| !s.samples.is_empty())
                .map(move |s| (format!("{} @ {}", r.sched, label(&s.column)), s))
        })
        .collect();
    let Some((lo, hi)) = x_range(&lanes) else {
        return String::new();
    };
    let height = FRAME_H + LANE_H * lanes.len() as u32;
    let mut svg = String::new();
    let drawn = draw(&mut svg, (WIDTH, height), &lanes, (lo as f32, hi as f32), t);
    match drawn {
        // The backend's own XML declaration is not allowed inside an HTML document.
        Ok(()) => svg
            .trim_start_matches(|c| c != '<')
            .replacen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "", 1)
            .trim()
            .to_string(),
        Err(e) => format!("<p>(plot not drawn: {})</p>", crate::render::xml_escape(&e)),
    }
}

fn draw(
    svg: &mut String,
    size: (u32, u32),
    lanes: &[(String, &Stat)],
    (lo, hi): (f32, f32),
    t: &MetricTable,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = lanes.len();
    let mut chart = ChartBuilder::on(&root)
        .margin(6)
        .x_label_area_size(28)
        .y_label_area_size(LABEL_W)
        .build_cartesian_2d(lo..hi, (0..n).into_segmented())
        .map_err(|e| err(&e))?;
    let unit = t.unit.clone().unwrap_or_default();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                lanes.get(*i).map(|l| l.0.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_labels(6)
        .x_label_formatter(&|v| format!("{}{}", fmt_num(*v as f64), unit_suffix(&unit)))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (_, s)) in lanes.iter().enumerate() {
        let color = lane_color(s);
        let q = Quartiles::new(&s.samples);
        chart
            .draw_series(std::iter::once(
                Boxplot::new_horizontal(SegmentValue::CenterOf(i), &q)
                    .width(LANE_H - 10)
                    .whisker_width(0.6)
                    .style(color.stroke_width(1)),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(s.samples.iter().map(|v| {
                Circle::new(
                    (*v as f32, SegmentValue::CenterOf(i)),
                    3,
                    color.mix(0.55).filled(),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn unit_suffix(unit: &str) -> String {
    match unit {
        "" | "units" | "count" | "ratio" => String::new(),
        u => format!(" {u}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Direction, Row};

    fn table(samples: Vec<f64>) -> MetricTable {
        MetricTable {
            scenario: "steady".into(),
            topology: "1n1l2c1t".into(),
            metric: "max_gap_ms".into(),
            direction: Direction::LowerIsBetter,
            unit: Some("ms".into()),
            headline: true,
            rows: vec![Row {
                sched: "eevdf".into(),
                stats: vec![Stat {
                    column: "6.12/sched_ext".into(),
                    median: 2.0,
                    samples,
                    vs_baseline: None,
                    vs_eevdf: None,
                }],
            }],
        }
    }

    #[test]
    fn a_plot_has_a_box_and_a_dot_per_sample() {
        let svg = box_plot(&table(vec![1.0, 2.0, 3.5]), &|c| c.to_string());
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("<?xml"));
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert!(svg.contains("eevdf @ 6.12/sched_ext"), "{svg}");
    }

    #[test]
    fn the_image_carries_the_svg_escaped_for_its_attribute() {
        let img = box_plot_img(&table(vec![1.0, 2.0]), &|c| c.to_string());
        assert!(img.starts_with("<img") && img.contains("data:image/svg+xml,<svg"));
        let url = &img[img.find("src=\"").unwrap() + 5..img.len() - 2];
        assert!(!url.contains(['"', '#', '&', '\n']), "{url}");
    }

    #[test]
    fn no_samples_no_plot() {
        assert_eq!(box_plot(&table(vec![]), &|c| c.to_string()), "");
    }
}
