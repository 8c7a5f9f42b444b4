//! CPU reference of projection, tile binning, depth sort and front-to-back blending, as
//! gsplat 1.5.3's `rasterization(..., packed=False)` with colours given directly: per pixel,
//! the gaussians whose tile range covers the pixel's tile, in increasing depth (ties by
//! index), alpha `min(0.999, o·exp(−σ))`, skipped under 1/255 or for negative σ, blending
//! stopped before transmittance would fall to 1e-4, then the white background under what is
//! left.

use rayon::prelude::*;

use crate::{
    constants::{ALPHA_MAX, ALPHA_MIN, TILE_SIZE, T_MIN},
    gaussians::Gaussians,
    project::{covariance, project, tile_rect, Projected},
    rig::Rig,
    views::Views,
};

/// Renders every view of `rig`.
pub fn render(g: &Gaussians, rig: &Rig) -> Views {
    let covs: Vec<[f32; 6]> = g
        .quats
        .par_iter()
        .zip(&g.scales)
        .map(|(q, s)| covariance(*q, *s))
        .collect();
    let per_view: Vec<Vec<[f32; 4]>> = (0..rig.views())
        .into_par_iter()
        .map(|v| render_view(g, &covs, rig, v))
        .collect();
    Views {
        views: rig.views(),
        width: rig.width,
        height: rig.height,
        pixels: per_view.into_iter().flatten().collect(),
    }
}

fn render_view(g: &Gaussians, covs: &[[f32; 6]], rig: &Rig, v: usize) -> Vec<[f32; 4]> {
    let cam = &rig.cameras[v];
    let (w, h) = (rig.width, rig.height);
    let tiles_x = w.div_ceil(TILE_SIZE);
    let tiles_y = h.div_ceil(TILE_SIZE);
    let projected: Vec<Option<Projected>> = (0..g.means.len())
        .into_par_iter()
        .map(|i| project(g.means[i], &covs[i], g.opacities[i], cam, w, h))
        .collect();
    // Depth order; ties keep index order, as gsplat's stable radix sort on (tile, depth bits).
    let mut order: Vec<u32> = (0..g.means.len() as u32)
        .filter(|&i| projected[i as usize].is_some())
        .collect();
    order.par_sort_by_key(|&i| projected[i as usize].map_or(0, |p| p.depth.to_bits()));
    let mut tiles: Vec<Vec<u32>> = vec![Vec::new(); (tiles_x * tiles_y) as usize];
    for &i in &order {
        let Some(p) = projected[i as usize] else {
            continue;
        };
        let [x0, y0, x1, y1] = tile_rect(&p, tiles_x, tiles_y);
        for ty in y0..y1 {
            for tx in x0..x1 {
                tiles[(ty * tiles_x + tx) as usize].push(i);
            }
        }
    }
    let mut pixels = vec![[0f32; 4]; (w * h) as usize];
    pixels
        .par_chunks_mut(w as usize)
        .enumerate()
        .for_each(|(y, row)| {
            let ty = y as u32 / TILE_SIZE;
            for (x, out) in row.iter_mut().enumerate() {
                let list = &tiles[(ty * tiles_x + x as u32 / TILE_SIZE) as usize];
                *out = blend_pixel(x as f32 + 0.5, y as f32 + 0.5, list, &projected, g);
            }
        });
    pixels
}

fn blend_pixel(
    px: f32,
    py: f32,
    list: &[u32],
    projected: &[Option<Projected>],
    g: &Gaussians,
) -> [f32; 4] {
    let mut t = 1.0f32;
    let mut rgb = [0f32; 3];
    for &i in list {
        let Some(p) = projected[i as usize] else {
            continue;
        };
        let (dx, dy) = (p.mean[0] - px, p.mean[1] - py);
        let sigma = 0.5 * (p.conic[0] * dx * dx + p.conic[2] * dy * dy) + p.conic[1] * dx * dy;
        let alpha = ALPHA_MAX.min(g.opacities[i as usize] * (-sigma).exp());
        if sigma < 0.0 || alpha < ALPHA_MIN {
            continue;
        }
        let next_t = t * (1.0 - alpha);
        if next_t <= T_MIN {
            break;
        }
        let vis = alpha * t;
        let c = g.colors[i as usize];
        for k in 0..3 {
            rgb[k] += c[k] * vis;
        }
        t = next_t;
    }
    // White background under the remaining transmittance, then the validator's clip.
    [
        (rgb[0] + t).clamp(0.0, 1.0),
        (rgb[1] + t).clamp(0.0, 1.0),
        (rgb[2] + t).clamp(0.0, 1.0),
        1.0 - t,
    ]
}
