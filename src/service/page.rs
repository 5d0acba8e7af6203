//! `GET /`: the status page, one server-rendered HTML document with inline SVG charts; no
//! script. It refreshes itself every 30 s and fits a phone's width.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::state::{human_seconds, SetView, State};
use crate::backupset::history::Outcome;

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;color:#222;max-width:60rem}\
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem;font-size:.9rem}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
.wrap{overflow-x:auto}.failure,.cancelled{color:#b00020;font-weight:600}.success{color:#1b7f3b}\
.skipped{color:#8a6d00}.bad{background:#fde8e8;padding:.5rem}.ok{background:#e8f5ec;padding:.5rem}\
svg{width:100%;max-width:28rem;height:auto;background:#fafafa;border:1px solid #eee}\
.charts{display:flex;flex-wrap:wrap;gap:1rem}";

pub fn render(state: &State, set: &SetView, free_bytes: Option<u64>, now: DateTime<Utc>) -> String {
    let mut page = String::new();
    let problems = state.health_problems(set, now);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>pgmirror: {dir}</title><style>{STYLE}</style></head><body>\
         <h1>Backups in {dir}</h1>",
        dir = escape(&state.config.dir.display().to_string())
    );
    if problems.is_empty() {
        page.push_str("<p id=\"health\" class=\"ok\">Healthy</p>");
    } else {
        page.push_str("<div id=\"health\" class=\"bad\"><strong>Unhealthy</strong><ul>");
        for problem in &problems {
            let _ = write!(page, "<li>{}</li>", escape(problem));
        }
        page.push_str("</ul></div>");
    }
    let _ = write!(
        page,
        "<p>{} backups, {} in all; {} free; updated {} UTC</p>",
        set.backups.len(),
        indicatif::HumanBytes(set.total_bytes()),
        free_bytes.map_or("unknown".into(), |b| indicatif::HumanBytes(b).to_string()),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    backups_table(&mut page, set, now);
    charts(&mut page, set);
    jobs_table(&mut page, state, now);
    page.push_str("</body></html>\n");
    page
}

fn backups_table(page: &mut String, set: &SetView, now: DateTime<Utc>) {
    page.push_str(
        "<h2>Backups</h2><div class=\"wrap\"><table id=\"backups\"><thead><tr><th>id</th><th>kind</th>\
         <th>age</th><th>size</th><th>verified</th><th>pinned</th></tr></thead><tbody>",
    );
    for (path, manifest) in set.backups.iter().rev() {
        let size = manifest.size_bytes();
        let _ =
            write!(
            page,
            "<tr class=\"backup\" data-id=\"{id}\"><td>{id}</td><td>{kind}</td><td>{age}</td><td>{size}</td>\
             <td class=\"{verified_class}\">{verified}</td><td>{pinned}</td></tr>",
            id = escape(&manifest.id),
            kind = crate::backupset::kinds_label(&manifest.kinds),
            age = human_seconds(now.timestamp() - manifest.created_unix),
            size = indicatif::HumanBytes(size),
            verified_class = if manifest.verified { "success" } else { "failure" },
            verified = if manifest.verified { "yes" } else { "NO" },
            pinned = if crate::backupset::is_pinned(path) { "pinned" } else { "" },
        );
    }
    if set.backups.is_empty() {
        page.push_str("<tr><td colspan=\"6\">no backups yet</td></tr>");
    }
    page.push_str("</tbody></table></div>");
}

fn jobs_table(page: &mut String, state: &State, now: DateTime<Utc>) {
    page.push_str(
        "<h2>Jobs</h2><div class=\"wrap\"><table id=\"jobs\"><thead><tr><th>job</th><th>runs</th>\
         <th>next runs</th></tr></thead><tbody>",
    );
    for job in &state.config.jobs {
        let next: Vec<String> = match &job.schedule {
            Some(schedule) => schedule
                .upcoming(now, 3)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string())
                .collect(),
            None => vec!["at start only".into()],
        };
        let status = if state.running.contains(&job.name) {
            " (running)"
        } else {
            ""
        };
        let _ = write!(
            page,
            "<tr class=\"job\" data-job=\"{name}\"><td>{name}{status}<br><small>{run} {pattern}</small></td><td><ol class=\"runs\">",
            name = escape(&job.name),
            run = job.kind.name(),
            pattern = escape(&job.schedule.as_ref().map(|s| format!("{} {}", s.pattern, s.timezone)).unwrap_or_default()),
        );
        let runs = state
            .history
            .jobs
            .get(&job.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for run in runs.iter().rev().take(5) {
            let _ = write!(
                page,
                "<li class=\"run {outcome}\" data-outcome=\"{outcome}\">{started}: {outcome}, {duration:.1}s{detail}</li>",
                outcome = run.outcome.name(),
                started = escape(&run.started),
                duration = run.duration_seconds,
                detail = match (&run.error, &run.detail) {
                    (Some(error), _) => format!(" <span class=\"error\">{}</span>", escape(error)),
                    (None, Some(detail)) if run.outcome == Outcome::Success => format!(" ({})", escape(detail)),
                    _ => String::new(),
                },
            );
        }
        if runs.is_empty() {
            page.push_str("<li>not run yet</li>");
        }
        let _ = write!(
            page,
            "</ol></td><td>{}</td></tr>",
            escape(&next.join("\n")).replace('\n', "<br>")
        );
    }
    page.push_str("</tbody></table></div>");
}

fn charts(page: &mut String, set: &SetView) {
    let points = |value: &dyn Fn(&crate::backupset::BackupManifest) -> Option<f64>| -> Vec<(f64, f64)> {
        set.backups
            .iter()
            .filter_map(|(_, m)| Some((m.created_unix as f64, value(m)?)))
            .collect()
    };
    let sizes = points(&|m| Some(m.size_bytes() as f64));
    let durations = points(&|m| match (m.mirror_seconds, m.archive_seconds) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    });
    page.push_str("<h2>Over time</h2><div class=\"charts\">");
    page.push_str(&line_chart("chart-size", "Backup size", &sizes, &|v| {
        indicatif::HumanBytes(v as u64).to_string()
    }));
    page.push_str(&line_chart(
        "chart-duration",
        "Backup duration",
        &durations,
        &|v| format!("{v:.1} s"),
    ));
    page.push_str("</div>");
}

/// A small line chart of (x, y) points, oldest left, with its range labelled.
fn line_chart(id: &str, title: &str, points: &[(f64, f64)], label: &dyn Fn(f64) -> String) -> String {
    const WIDTH: f64 = 400.0;
    const HEIGHT: f64 = 140.0;
    const PAD: f64 = 24.0;
    let mut svg = format!(
        "<figure><svg id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\">\
         <title>{title}</title>"
    );
    if points.is_empty() {
        let _ = write!(svg, "<text x=\"{PAD}\" y=\"{}\">no data yet</text>", HEIGHT / 2.0);
    } else {
        let (min_x, max_x) = range(points.iter().map(|p| p.0));
        let (_, max_y) = range(points.iter().map(|p| p.1));
        let max_y = if max_y > 0.0 { max_y } else { 1.0 };
        let x = |v: f64| {
            if max_x > min_x {
                PAD + (v - min_x) / (max_x - min_x) * (WIDTH - 2.0 * PAD)
            } else {
                WIDTH / 2.0
            }
        };
        let y = |v: f64| HEIGHT - PAD - v / max_y * (HEIGHT - 2.0 * PAD);
        let line: Vec<String> = points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#3366cc\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        for &(px, py) in points {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#3366cc\"/>",
                x(px),
                y(py)
            );
        }
        let _ = write!(
            svg,
            "<text x=\"2\" y=\"12\" font-size=\"11\">{}</text><text x=\"2\" y=\"{}\" font-size=\"11\">0</text>",
            escape(&label(max_y)),
            HEIGHT - PAD
        );
    }
    let _ = write!(svg, "</svg><figcaption>{title}</figcaption></figure>");
    svg
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_break_out_of_the_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let chart = line_chart("c", "T", &[(1.0, 5.0), (2.0, 10.0)], &|v| format!("{v}"));
        // Oldest at the left edge, the largest value at the top.
        assert!(chart.contains("points=\"24.0,70.0 376.0,24.0\""), "{chart}");
        assert!(line_chart("c", "T", &[], &|v| format!("{v}")).contains("no data yet"));
    }
}
