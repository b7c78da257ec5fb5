//! A section's chart as inline SVG (charts-rs): the first column gives the categories (x),
//! the numeric columns after it (or `chart_series`) the series. charts-rs escapes every
//! text it writes into the SVG, so department-supplied category names cannot inject markup.

use charts_rs::{AxisLabelOverflow, BarChart, HorizontalBarChart, LineChart, PieChart, Series};
use chrono_tz::Tz;
use serde_json::Value;

use super::{ChartKind, ColumnFormat, SectionResult, display};

const WIDTH: f32 = 680.0;
const HEIGHT: f32 = 320.0;
/// Beyond this many categories, a chart is unreadable on A4; the table still has them all.
const MAX_CATEGORIES: usize = 40;

/// The SVG of the section's chart, or `None` when it has none (or nothing to draw).
pub fn svg(section: &SectionResult, tz: Tz) -> Option<String> {
    if section.chart == ChartKind::None || section.rows.is_empty() {
        return None;
    }
    let category = section.columns.first()?;
    let series_columns: Vec<usize> = section
        .columns
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, c)| {
            if section.chart_series.is_empty() {
                c.is_numeric()
            } else {
                section.chart_series.contains(&c.name)
            }
        })
        .map(|(i, _)| i)
        .collect();
    if series_columns.is_empty() {
        return None;
    }
    let rows = &section.rows[..section.rows.len().min(MAX_CATEGORIES)];
    let categories: Vec<String> = rows
        .iter()
        .map(|r| {
            let text = display(r.first().unwrap_or(&Value::Null), category, tz);
            if text.is_empty() { "—".into() } else { text }
        })
        .collect();
    let value = |row: &[Value], i: usize| -> Option<f32> {
        let x = row.get(i)?.as_f64()?;
        let percent = section.columns.get(i)?.format == ColumnFormat::Percent;
        Some(if percent { x * 100.0 } else { x } as f32)
    };
    let series: Vec<Series> = series_columns
        .iter()
        .map(|&i| {
            Series::new_nullable(
                section.columns[i].label.clone(),
                rows.iter().map(|r| value(r, i)).collect(),
            )
        })
        .collect();
    let result = match section.chart {
        ChartKind::None => return None,
        ChartKind::Bar => {
            let mut chart = BarChart::new(series, categories);
            chart.width = WIDTH;
            chart.height = HEIGHT;
            chart.x_axis.label_overflow = AxisLabelOverflow::Rotate;
            chart.svg()
        }
        ChartKind::Hbar => {
            // Room for every bar: a fixed height per category.
            let height = (rows.len() as f32 * 28.0 * series_columns.len().max(1) as f32)
                .clamp(160.0, 900.0)
                + 60.0;
            let mut chart = HorizontalBarChart::new(series, categories);
            chart.width = WIDTH;
            chart.height = height;
            chart.svg()
        }
        ChartKind::Line => {
            let mut chart = LineChart::new(series, categories);
            chart.width = WIDTH;
            chart.height = HEIGHT;
            chart.x_axis.label_overflow = AxisLabelOverflow::Rotate;
            chart.svg()
        }
        ChartKind::Pie => {
            // One slice per category, sized by the first series.
            let first = series_columns[0];
            let slices: Vec<Series> = rows
                .iter()
                .zip(&categories)
                .filter_map(|(r, name)| Some(Series::new(name.clone(), vec![value(r, first)?])))
                .collect();
            if slices.is_empty() {
                return None;
            }
            let mut chart = PieChart::new(slices);
            // charts-rs draws a "rose" by default (radius by value), which makes a slice
            // look larger than its share; a report's pie must be proportional by angle.
            chart.rose_type = Some(false);
            chart.width = WIDTH;
            chart.height = HEIGHT + 80.0;
            chart.svg()
        }
    };
    match result {
        Ok(svg) => Some(svg),
        Err(e) => {
            tracing::warn!(section = %section.title, error = %e, "chart could not be drawn; the table is shown alone");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::{ChartKind, ColumnFormat, ColumnResult};

    fn column(name: &str, type_name: &str) -> ColumnResult {
        ColumnResult {
            name: name.into(),
            label: name.into(),
            type_name: type_name.into(),
            format: ColumnFormat::Auto,
        }
    }

    /// For each slice (a path with `data-series`), the radii of its arcs (`A rx ry ...`):
    /// outer, inner (the doughnut's hole) and the rounded corners.
    fn slice_radii(svg: &str) -> Vec<Vec<String>> {
        svg.split("<path d=\"")
            .skip(1)
            .filter(|p| p.contains("data-series"))
            .map(|path| {
                let d = path.split('"').next().unwrap_or_default();
                let mut radii: Vec<String> = d
                    .split('A')
                    .skip(1)
                    .filter_map(|arc| arc.split_whitespace().next().map(str::to_string))
                    .collect();
                radii.sort();
                radii.dedup();
                radii
            })
            .collect()
    }

    #[test]
    fn a_pie_is_proportional_by_angle_not_by_radius() {
        let section = SectionResult {
            title: "Tình trạng".into(),
            intro: None,
            chart: ChartKind::Pie,
            chart_series: vec![],
            columns: vec![column("status", "string"), column("n", "integer")],
            rows: vec![
                vec![json!("Mới tiếp nhận"), json!(1)],
                vec![json!("Đã xử lý"), json!(3)],
            ],
            truncated: false,
        };
        let svg = svg(&section, chrono_tz::Asia::Ho_Chi_Minh).expect("a pie");
        let slices = slice_radii(&svg);
        assert_eq!(slices.len(), 2, "two slices drawn: {svg}");
        assert!(!slices[0].is_empty());
        assert_eq!(slices[0], slices[1], "every slice has the same radii");
    }
}
