//! Projection of one gaussian into one camera, step for step as gsplat 1.5.3 does it
//! (`ProjectionEWA3DGSFused.cu`, `Utils.cuh`: `quat_to_rotmat`, `persp_proj`, `add_blur`,
//! the opacity-aware bounding box), in f32 so the CPU reference and the kernel agree to the
//! last bits that matter. The CUDA kernel carries the same steps.

use crate::{
    constants::{ALPHA_MIN, EPS2D, EXTEND_MAX, TILE_SIZE},
    rig::Camera,
};

/// A gaussian as one camera sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projected {
    pub mean: [f32; 2],
    /// Inverse 2D covariance `(a, b, c)` of `[[a, b], [b, c]]`.
    pub conic: [f32; 3],
    pub depth: f32,
    pub radius: [i32; 2],
}

/// Row-major 3×3 rotation of a unit quaternion `w, x, y, z` (normalised again, as gsplat does).
pub fn quat_to_rotmat(q: [f32; 4]) -> [[f32; 3]; 3] {
    let inv = 1.0 / (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let (w, x, y, z) = (q[0] * inv, q[1] * inv, q[2] * inv, q[3] * inv);
    let (x2, y2, z2) = (x * x, y * y, z * z);
    let (xy, xz, yz) = (x * y, x * z, y * z);
    let (wx, wy, wz) = (w * x, w * y, w * z);
    [
        [1.0 - 2.0 * (y2 + z2), 2.0 * (xy - wz), 2.0 * (xz + wy)],
        [2.0 * (xy + wz), 1.0 - 2.0 * (x2 + z2), 2.0 * (yz - wx)],
        [2.0 * (xz - wy), 2.0 * (yz + wx), 1.0 - 2.0 * (x2 + y2)],
    ]
}

/// World-space covariance `R S Sᵀ Rᵀ`, as its upper triangle `(xx, xy, xz, yy, yz, zz)`.
pub fn covariance(q: [f32; 4], s: [f32; 3]) -> [f32; 6] {
    let r = quat_to_rotmat(q);
    let m = |i: usize, j: usize| r[i][j] * s[j];
    let c = |i: usize, j: usize| m(i, 0) * m(j, 0) + m(i, 1) * m(j, 1) + m(i, 2) * m(j, 2);
    [c(0, 0), c(0, 1), c(0, 2), c(1, 1), c(1, 2), c(2, 2)]
}

/// Projects a gaussian; `None` when gsplat would cull it (outside near/far, degenerate,
/// too transparent, or off screen).
pub fn project(
    mean: [f32; 3],
    cov: &[f32; 6],
    opacity: f32,
    cam: &Camera,
    width: u32,
    height: u32,
) -> Option<Projected> {
    let r = &cam.rotation;
    let t = &cam.translation;
    let pc = [
        r[0][0] * mean[0] + r[0][1] * mean[1] + r[0][2] * mean[2] + t[0],
        r[1][0] * mean[0] + r[1][1] * mean[1] + r[1][2] * mean[2] + t[1],
        r[2][0] * mean[0] + r[2][1] * mean[1] + r[2][2] * mean[2] + t[2],
    ];
    if pc[2] < cam.near || pc[2] > cam.far {
        return None;
    }
    // Camera-space covariance R Σ Rᵀ.
    let sigma = [
        [cov[0], cov[1], cov[2]],
        [cov[1], cov[3], cov[4]],
        [cov[2], cov[4], cov[5]],
    ];
    let mut rs = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            rs[i][j] = r[i][0] * sigma[0][j] + r[i][1] * sigma[1][j] + r[i][2] * sigma[2][j];
        }
    }
    let mut cc = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            cc[i][j] = rs[i][0] * r[j][0] + rs[i][1] * r[j][1] + rs[i][2] * r[j][2];
        }
    }
    // persp_proj: the Jacobian is evaluated at a position clamped to 1.3× the view frustum.
    let (w, h) = (width as f32, height as f32);
    let tan_fovx = 0.5 * w / cam.fx;
    let tan_fovy = 0.5 * h / cam.fy;
    let lim_x_pos = (w - cam.cx) / cam.fx + 0.3 * tan_fovx;
    let lim_x_neg = cam.cx / cam.fx + 0.3 * tan_fovx;
    let lim_y_pos = (h - cam.cy) / cam.fy + 0.3 * tan_fovy;
    let lim_y_neg = cam.cy / cam.fy + 0.3 * tan_fovy;
    let (x, y, z) = (pc[0], pc[1], pc[2]);
    let rz = 1.0 / z;
    let rz2 = rz * rz;
    let tx = z * lim_x_pos.min((-lim_x_neg).max(x * rz));
    let ty = z * lim_y_pos.min((-lim_y_neg).max(y * rz));
    let j = [
        [cam.fx * rz, 0.0, -cam.fx * tx * rz2],
        [0.0, cam.fy * rz, -cam.fy * ty * rz2],
    ];
    let mut jc = [[0f32; 3]; 2];
    for i in 0..2 {
        for k in 0..3 {
            jc[i][k] = j[i][0] * cc[0][k] + j[i][1] * cc[1][k] + j[i][2] * cc[2][k];
        }
    }
    let mut a = jc[0][0] * j[0][0] + jc[0][1] * j[0][1] + jc[0][2] * j[0][2];
    let b = jc[0][0] * j[1][0] + jc[0][1] * j[1][1] + jc[0][2] * j[1][2];
    let mut c = jc[1][0] * j[1][0] + jc[1][1] * j[1][1] + jc[1][2] * j[1][2];
    let mean2d = [cam.fx * x * rz + cam.cx, cam.fy * y * rz + cam.cy];
    // add_blur
    a += EPS2D;
    c += EPS2D;
    let det = a * c - b * b;
    if det <= 0.0 {
        return None;
    }
    let inv_det = 1.0 / det;
    let conic = [c * inv_det, -b * inv_det, a * inv_det];
    if opacity < ALPHA_MIN {
        return None;
    }
    let extend = EXTEND_MAX.min((2.0 * (opacity / ALPHA_MIN).ln()).sqrt());
    let rx = (extend * a.sqrt()).ceil();
    let ry = (extend * c.sqrt()).ceil();
    if rx <= 0.0 && ry <= 0.0 {
        return None;
    }
    if mean2d[0] + rx <= 0.0 || mean2d[0] - rx >= w || mean2d[1] + ry <= 0.0 || mean2d[1] - ry >= h
    {
        return None;
    }
    Some(Projected {
        mean: mean2d,
        conic,
        depth: z,
        radius: [rx as i32, ry as i32],
    })
}

/// Tiles a projected gaussian touches: `(x0, y0, x1, y1)`, min inclusive, max exclusive,
/// clamped to the tile grid (gsplat `IntersectTile.cu`). Empty when a radius is 0.
pub fn tile_rect(p: &Projected, tiles_x: u32, tiles_y: u32) -> [u32; 4] {
    if p.radius[0] <= 0 || p.radius[1] <= 0 {
        return [0, 0, 0, 0];
    }
    let ts = TILE_SIZE as f32;
    let (tx, ty) = (p.mean[0] / ts, p.mean[1] / ts);
    let (rx, ry) = (p.radius[0] as f32 / ts, p.radius[1] as f32 / ts);
    // A negative float cast to u32 saturates at 0, as the CUDA conversion does.
    let clamp = |v: f32, hi: u32| (v as u32).min(hi);
    [
        clamp((tx - rx).floor(), tiles_x),
        clamp((ty - ry).floor(), tiles_y),
        clamp((tx + rx).ceil(), tiles_x),
        clamp((ty + ry).ceil(), tiles_y),
    ]
}
