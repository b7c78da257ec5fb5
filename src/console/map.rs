//! The units' areas (parsed once from the GeoJSON at config load, `units::AdminUnit::area`)
//! drawn as an SVG map, each unit filled by a class of its count and labelled with its name
//! and the count (so the map is readable without telling colours apart). No tile server: the
//! IOC network may be closed, and communes are all the map needs.
//!
//! Projection: equirectangular, with longitudes shrunk by cos(mean latitude) so a district
//! (tens of km) keeps its shape; north is up.

use geo::{BoundingRect, Centroid, MultiPolygon, Polygon};
use maud::{Markup, html};

/// One unit to draw.
pub struct MapUnit<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub area: &'a MultiPolygon<f64>,
    pub count: i64,
}

/// The legend's line for a fill class (Vietnamese puts "trở lên" after the noun).
pub fn legend_of(count: i64) -> &'static str {
    match count {
        c if c <= 0 => "Không có phản ánh quá hạn",
        1..=2 => "1–2 phản ánh quá hạn",
        _ => "Từ 3 phản ánh quá hạn trở lên",
    }
}

/// The fill classes: none, some, many (the legend says which counts each means).
pub fn class_of(count: i64) -> (&'static str, &'static str) {
    match count {
        c if c <= 0 => ("#d8efe0", "Không có"),
        1..=2 => ("#fbdc8e", "1–2"),
        _ => ("#f1a79d", "Từ 3 trở lên"),
    }
}

struct Projection {
    min_lon: f64,
    max_lat: f64,
    kx: f64,
    scale: f64,
    pad: f64,
}

impl Projection {
    fn fit(units: &[MapUnit<'_>], width: f64, height: f64, pad: f64) -> Option<Self> {
        let mut bounds: Option<(f64, f64, f64, f64)> = None;
        for u in units {
            if let Some(r) = u.area.bounding_rect() {
                let (a, b) = (r.min(), r.max());
                bounds = Some(match bounds {
                    None => (a.x, a.y, b.x, b.y),
                    Some((x0, y0, x1, y1)) => (x0.min(a.x), y0.min(a.y), x1.max(b.x), y1.max(b.y)),
                });
            }
        }
        let (min_lon, min_lat, max_lon, max_lat) = bounds?;
        let kx = ((min_lat + max_lat) / 2.0).to_radians().cos();
        let w = (max_lon - min_lon) * kx;
        let h = max_lat - min_lat;
        if w <= 0.0 || h <= 0.0 {
            return None;
        }
        let scale = ((width - 2.0 * pad) / w).min((height - 2.0 * pad) / h);
        Some(Projection {
            min_lon,
            max_lat,
            kx,
            scale,
            pad,
        })
    }

    fn point(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            self.pad + (lon - self.min_lon) * self.kx * self.scale,
            self.pad + (self.max_lat - lat) * self.scale,
        )
    }

    /// An SVG path (`M ... Z` per ring; holes drawn with the even-odd rule).
    fn path(&self, area: &MultiPolygon<f64>) -> String {
        let mut d = String::new();
        let mut ring = |coords: &mut dyn Iterator<Item = geo::Coord<f64>>| {
            for (i, c) in coords.enumerate() {
                let (x, y) = self.point(c.x, c.y);
                d.push_str(&format!("{}{x:.1} {y:.1} ", if i == 0 { "M" } else { "L" }));
            }
            d.push_str("Z ");
        };
        for polygon in area {
            ring(&mut polygon.exterior().coords().copied());
            for hole in polygon.interiors() {
                ring(&mut hole.coords().copied());
            }
        }
        d.trim_end().to_string()
    }
}

fn largest(area: &MultiPolygon<f64>) -> Option<&Polygon<f64>> {
    use geo::Area;
    area.iter().max_by(|a, b| {
        a.unsigned_area()
            .partial_cmp(&b.unsigned_area())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// The map as inline SVG, with a title for screen readers (the page has the same counts as a
/// table next to it).
pub fn svg(units: &[MapUnit<'_>], title: &str) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 520.0;
    let Some(projection) = Projection::fit(units, W, H, 12.0) else {
        return html! { p { "Chưa có ranh giới đơn vị để vẽ bản đồ." } };
    };
    html! {
        svg.map xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) }
            role="img" aria-labelledby="ban-do-tieu-de" {
            title id="ban-do-tieu-de" { (title) }
            @for u in units {
                @let (fill, _) = class_of(u.count);
                path d=(projection.path(u.area)) fill=(fill) fill-rule="evenodd"
                     stroke="#33475b" stroke-width="1.5" {
                    title { (u.name) ": " (u.count) " phản ánh quá hạn" }
                }
            }
            @for u in units {
                @if let Some(c) = largest(u.area).and_then(|p| p.centroid()) {
                    @let (x, y) = projection.point(c.x(), c.y());
                    text x=(format!("{x:.1}")) y=(format!("{:.1}", y - 4.0)) text-anchor="middle"
                         font-size="13" fill="#111" { (short_name(u.name)) }
                    text x=(format!("{x:.1}")) y=(format!("{:.1}", y + 13.0)) text-anchor="middle"
                         font-size="14" font-weight="700" fill="#111" data-code=(u.code) { (u.count) }
                }
            }
        }
    }
}

/// "Xã Tân Lập" → "Tân Lập": the type word makes labels too wide for small units.
fn short_name(name: &str) -> &str {
    ["Thị trấn ", "Xã ", "Phường "]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    #[test]
    fn units_fit_the_box_north_up() {
        let south: MultiPolygon<f64> = polygon![(x: 106.0, y: 11.0), (x: 106.1, y: 11.0), (x: 106.1, y: 11.1), (x: 106.0, y: 11.1)].into();
        let north: MultiPolygon<f64> = polygon![(x: 106.0, y: 11.1), (x: 106.1, y: 11.1), (x: 106.1, y: 11.2), (x: 106.0, y: 11.2)].into();
        let units = [
            MapUnit {
                code: "1",
                name: "Xã Nam",
                area: &south,
                count: 0,
            },
            MapUnit {
                code: "2",
                name: "Xã Bắc",
                area: &north,
                count: 3,
            },
        ];
        let p = Projection::fit(&units, 640.0, 520.0, 10.0).unwrap();
        let (_, y_south) = p.point(106.05, 11.05);
        let (_, y_north) = p.point(106.05, 11.15);
        assert!(y_north < y_south, "north is up");
        for (lon, lat) in [(106.0, 11.0), (106.1, 11.2)] {
            let (x, y) = p.point(lon, lat);
            assert!((0.0..=640.0).contains(&x) && (0.0..=520.0).contains(&y));
        }
        let markup = svg(&units, "Bản đồ").into_string();
        assert!(
            markup.contains("Bắc") && markup.contains("#f1a79d"),
            "{markup}"
        );
        assert!(markup.contains("<title"), "{markup}");
    }
}
