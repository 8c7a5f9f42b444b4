//! PLY writer in the reference property order (`x y z [nx ny nz] f_dc_0..2 f_rest_* opacity
//! scale_0..2 rot_0..3`, all `float`, the header exactly as 404-Repo/spz writes it in
//! `src/cc/load-spz.cc` lines 1084-1126), so SN17's strict parser accepts the output and
//! write → read → write is byte-identical.

use std::fmt::Write as _;

use super::{Splat, SplatShapeError};

/// Serialises `splat` as a binary little-endian PLY.
pub fn write_ply(splat: &Splat) -> Result<Vec<u8>, SplatShapeError> {
    let mut out = Vec::new();
    write_ply_into(splat, &mut out)?;
    Ok(out)
}

/// Serialises `splat` into `out` (cleared first; its allocation is reused).
pub fn write_ply_into(splat: &Splat, out: &mut Vec<u8>) -> Result<(), SplatShapeError> {
    splat.check_shape()?;
    let n = splat.len();
    let r = splat.rest_coeffs() * 3;
    let normals = splat.normals.is_some();
    let mut header = String::with_capacity(1024);
    header.push_str("ply\nformat binary_little_endian 1.0\n");
    let _ = writeln!(header, "element vertex {n}");
    for name in ["x", "y", "z"] {
        let _ = writeln!(header, "property float {name}");
    }
    if normals {
        for name in ["nx", "ny", "nz"] {
            let _ = writeln!(header, "property float {name}");
        }
    }
    for name in ["f_dc_0", "f_dc_1", "f_dc_2"] {
        let _ = writeln!(header, "property float {name}");
    }
    for j in 0..r {
        let _ = writeln!(header, "property float f_rest_{j}");
    }
    for name in [
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ] {
        let _ = writeln!(header, "property float {name}");
    }
    header.push_str("end_header\n");
    let stride = (14 + if normals { 3 } else { 0 } + r) * 4;
    let total = header.len() + n * stride;
    out.clear();
    super::ply_read::size_for(out, total, 0);
    out[..header.len()].copy_from_slice(header.as_bytes());
    let body = &mut out[header.len()..];
    match (normals, splat.sh_degree) {
        (false, 0) => kernel::<56, false, 0>(body, splat),
        (false, 1) => kernel::<92, false, 9>(body, splat),
        (false, 2) => kernel::<152, false, 24>(body, splat),
        (false, _) => kernel::<236, false, 45>(body, splat),
        (true, 0) => kernel::<68, true, 0>(body, splat),
        (true, 1) => kernel::<104, true, 9>(body, splat),
        (true, 2) => kernel::<164, true, 24>(body, splat),
        (true, _) => kernel::<248, true, 45>(body, splat),
    }
    Ok(())
}

#[inline(always)]
fn wr<const S: usize>(row: &mut [u8; S], o: usize, v: f32) {
    row[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Fills `S`-byte records; `R` rest values per gaussian, converted to channel-major.
fn kernel<const S: usize, const NRM: bool, const R: usize>(body: &mut [u8], splat: &Splat) {
    let k = R / 3;
    let o_dc = if NRM { 24 } else { 12 };
    let o_rest = o_dc + 12;
    let o_tail = o_rest + R * 4;
    let (rows, _) = body.as_chunks_mut::<S>();
    let n = rows.len();
    let positions = &splat.positions[..n];
    let dcs = &splat.sh_dc[..n];
    let rest = &splat.sh_rest[..n * R];
    let opacities = &splat.opacities[..n];
    let scales = &splat.log_scales[..n];
    let rots = &splat.rotations[..n];
    let normals: &[[f32; 3]] = match &splat.normals {
        Some(v) if NRM => &v[..n],
        _ => &[],
    };
    for (i, row) in rows.iter_mut().enumerate() {
        let p = positions[i];
        wr(row, 0, p[0]);
        wr(row, 4, p[1]);
        wr(row, 8, p[2]);
        if NRM {
            let nv = normals.get(i).copied().unwrap_or_default();
            wr(row, 12, nv[0]);
            wr(row, 16, nv[1]);
            wr(row, 20, nv[2]);
        }
        let dc = dcs[i];
        wr(row, o_dc, dc[0]);
        wr(row, o_dc + 4, dc[1]);
        wr(row, o_dc + 8, dc[2]);
        if R > 0 {
            let src = &rest[i * R..i * R + R];
            for kk in 0..k {
                for c in 0..3 {
                    wr(row, o_rest + (c * k + kk) * 4, src[kk * 3 + c]);
                }
            }
        }
        wr(row, o_tail, opacities[i]);
        let s = scales[i];
        wr(row, o_tail + 4, s[0]);
        wr(row, o_tail + 8, s[1]);
        wr(row, o_tail + 12, s[2]);
        let q = rots[i];
        wr(row, o_tail + 16, q[0]);
        wr(row, o_tail + 20, q[1]);
        wr(row, o_tail + 24, q[2]);
        wr(row, o_tail + 28, q[3]);
    }
}
