//! Small SVG plots for the nightly summary: a target's coverage and executions per second over
//! its run, as fuzzing dashboards show them. Plain SVG, no dependency; the same samples give
//! the same file.

use std::fmt::Write;

use crate::fuzzing::FuzzStats;

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 110.0;
const MARGIN: f64 = 30.0;

/// Two panels side by side, coverage (edges) and exec/s, against seconds since the start.
pub fn coverage_and_speed(target: &str, samples: &[(f64, FuzzStats)]) -> String {
    let coverage: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(t, s)| Some((*t, s.coverage? as f64)))
        .collect();
    let speed: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(t, s)| Some((*t, s.exec_per_sec? as f64)))
        .collect();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="10">"#,
        w = 2.0 * WIDTH,
        h = HEIGHT + 20.0
    );
    let _ = writeln!(svg, r#"<title>{}</title>"#, escape(target));
    panel(
        &mut svg,
        0.0,
        &format!("{}: coverage (edges)", escape(target)),
        &coverage,
        "#1f77b4",
    );
    panel(&mut svg, WIDTH, "exec/s", &speed, "#d62728");
    svg.push_str("</svg>\n");
    svg
}

/// One panel at horizontal offset `x0`: a frame, the curve, the axis ranges.
fn panel(svg: &mut String, x0: f64, title: &str, points: &[(f64, f64)], colour: &str) {
    let (left, top) = (x0 + MARGIN, 18.0);
    let (w, h) = (WIDTH - 1.5 * MARGIN, HEIGHT - 30.0);
    let _ = writeln!(svg, r#"<text x="{left}" y="12">{title}</text>"#);
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
    );
    if points.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">no data</text>"#,
            left + 8.0,
            top + 20.0
        );
        return;
    }
    let t_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let path: Vec<String> = points
        .iter()
        .map(|&(t, y)| format!("{:.1},{:.1}", left + w * t / t_max, top + h - h * y / y_max))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
        path.join(" ")
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{y_max:.0}</text>"#,
        left - 3.0,
        top + 8.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">0</text>"#,
        left - 3.0,
        top + h
    );
    let _ = writeln!(svg, r#"<text x="{left}" y="{}">0 s</text>"#, top + h + 12.0);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{t_max:.0} s</text>"#,
        left + w,
        top + h + 12.0
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(coverage: u64, speed: u64) -> FuzzStats {
        FuzzStats {
            executions: None,
            exec_per_sec: Some(speed),
            coverage: Some(coverage),
        }
    }

    /// Both curves are drawn, scaled to the panels, and the same samples give the same SVG.
    #[test]
    fn a_plot_draws_both_curves() {
        let samples = [
            (0.0, stats(100, 0)),
            (5.0, stats(150, 900)),
            (10.0, stats(200, 1000)),
        ];
        let svg = coverage_and_speed("ops", &samples);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // The last coverage point is at the panel's right edge and top.
        assert!(svg.contains("285.0,18.0"), "{svg}");
        assert!(svg.contains(">200<") && svg.contains(">1000<"), "{svg}");
        assert_eq!(svg, coverage_and_speed("ops", &samples));
        assert!(coverage_and_speed("mmu", &[]).contains("no data"));
    }
}
