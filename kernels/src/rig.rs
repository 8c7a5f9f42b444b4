//! Cameras, built exactly as the validator builds them (three-gen-subnet 5fc61f1,
//! `validation/engine/rendering/gaussian_splatting/gs_camera.py` and `gs_renderer.py`):
//! orbit positions `(r·cos el·sin az, −r·sin el, r·cos el·cos az)`, an OpenGL-style look-at
//! with up +y whose y and z axes are then flipped (so the camera looks down +z with y down,
//! as gsplat expects), focal `W / (2·tan(fov/2))` and principal point `W // 2`.

/// One pinhole camera: world-to-camera transform and intrinsics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    /// Row-major world-to-camera rotation.
    pub rotation: [[f32; 3]; 3],
    pub translation: [f32; 3],
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
    pub near: f32,
    pub far: f32,
}

/// A set of cameras sharing one image size.
#[derive(Debug, Clone, PartialEq)]
pub struct Rig {
    pub width: u32,
    pub height: u32,
    pub cameras: Vec<Camera>,
}

/// The validator's orbit parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OrbitSpec {
    pub views: usize,
    pub width: u32,
    pub height: u32,
    /// Azimuths in degrees; the validator uses `linspace(0, 360, views)` (0 and 360 both).
    pub azimuths_deg: Vec<f64>,
    pub elevation_deg: f64,
    pub radius: f64,
    pub fov_y_deg: f64,
    pub near: f32,
    pub far: f32,
}

impl OrbitSpec {
    /// 16 views, 518×518, azimuths `linspace(0, 360, 16)`, elevation −15°, radius 2.5,
    /// vertical FOV 49.1°, near 0.01, far 100.
    pub fn validator() -> Self {
        Self::validator_sized(16, 518, 518)
    }

    /// The validator's orbit with another view count or size (previews, tests).
    pub fn validator_sized(views: usize, width: u32, height: u32) -> Self {
        let azimuths_deg = linspace(0.0, 360.0, views);
        Self {
            views,
            width,
            height,
            azimuths_deg,
            elevation_deg: -15.0,
            radius: 2.5,
            fov_y_deg: 49.1,
            near: 0.01,
            far: 100.0,
        }
    }
}

/// numpy's `linspace(start, stop, num)` with the endpoint included.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => (0..num)
            .map(|i| start + (stop - start) * i as f64 / (num - 1) as f64)
            .collect(),
    }
}

impl Rig {
    /// The validator's 16-view rig.
    pub fn validator() -> Self {
        Self::orbit(&OrbitSpec::validator())
    }

    pub fn orbit(spec: &OrbitSpec) -> Self {
        let tan_half = (0.5 * spec.fov_y_deg.to_radians()).tan();
        // gs_camera.py computes both focals from the vertical FOV.
        let fx = spec.width as f64 / (2.0 * tan_half);
        let fy = spec.height as f64 / (2.0 * tan_half);
        let cameras = spec
            .azimuths_deg
            .iter()
            .map(|&az| {
                let (rotation, translation) =
                    orbit_world_to_camera(spec.elevation_deg, az, spec.radius);
                Camera {
                    rotation,
                    translation,
                    fx: fx as f32,
                    fy: fy as f32,
                    // Integer division, as `W // 2` in gs_camera.py.
                    cx: (spec.width / 2) as f32,
                    cy: (spec.height / 2) as f32,
                    near: spec.near,
                    far: spec.far,
                }
            })
            .collect();
        Self {
            width: spec.width,
            height: spec.height,
            cameras,
        }
    }

    pub fn views(&self) -> usize {
        self.cameras.len()
    }

    pub fn pixels_per_view(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

fn normalize(v: [f64; 3]) -> [f64; 3] {
    let len = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).max(1e-20).sqrt();
    [v[0] / len, v[1] / len, v[2] / len]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// World-to-camera rotation (row-major) and translation for one orbit position.
fn orbit_world_to_camera(
    elevation_deg: f64,
    azimuth_deg: f64,
    radius: f64,
) -> ([[f32; 3]; 3], [f32; 3]) {
    let (el, az) = (elevation_deg.to_radians(), azimuth_deg.to_radians());
    let campos = [
        radius * el.cos() * az.sin(),
        -radius * el.sin(),
        radius * el.cos() * az.cos(),
    ];
    // look_at(opengl_conv=True): forward points from the target (origin) to the camera.
    let forward = normalize(campos);
    let right = normalize(cross([0.0, 1.0, 0.0], forward));
    let up = normalize(cross(forward, right));
    // Camera-to-world columns are (right, up, forward); then `T[:3, 1:3] *= -1`.
    let c2w_cols = [
        right,
        [-up[0], -up[1], -up[2]],
        [-forward[0], -forward[1], -forward[2]],
    ];
    // World-to-camera rotation is the transpose: its rows are the camera-to-world columns.
    let mut rotation = [[0f32; 3]; 3];
    let mut translation = [0f32; 3];
    for (r, col) in c2w_cols.iter().enumerate() {
        rotation[r] = [col[0] as f32, col[1] as f32, col[2] as f32];
        translation[r] = -(col[0] * campos[0] + col[1] * campos[1] + col[2] * campos[2]) as f32;
    }
    (rotation, translation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_rig_matches_gs_camera() {
        let rig = Rig::validator();
        assert_eq!(rig.views(), 16);
        assert_eq!((rig.width, rig.height), (518, 518));
        let cam = rig.cameras[0];
        // Azimuth 0, elevation -15: the camera sits at (0, r sin 15°, r cos 15°) looking at the origin.
        let depth_of_origin = cam.translation[2];
        assert!(
            (depth_of_origin - 2.5).abs() < 1e-5,
            "origin is 2.5 in front: {depth_of_origin}"
        );
        // Focal = 518 / (2 tan(24.55°)) ≈ 567.012; principal point 259.
        assert!((cam.fx - 567.012).abs() < 0.01, "fx {}", cam.fx);
        assert_eq!(cam.cx, 259.0);
        // World +y (up) projects upwards on screen, i.e. to negative camera y.
        let up = cam.rotation[1][1];
        assert!(up < 0.0, "camera y points down: {up}");
        // linspace(0, 360, 16) includes both ends: the last view repeats the first.
        let last = rig.cameras[15];
        for r in 0..3 {
            for c in 0..3 {
                assert!((last.rotation[r][c] - cam.rotation[r][c]).abs() < 1e-5);
            }
        }
    }
}
