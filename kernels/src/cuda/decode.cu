// Decode + normalise + project: the model's statistics (one reduction), then one thread per
// gaussian that activates and normalises it as the validator does (three-gen-subnet 5fc61f1
// loader.py and gs_utils.py) and projects it into every camera as gsplat 1.5.3 does
// (ProjectionEWA3DGSFused.cu). The CPU reference is kernels/src/gaussians.rs and project.rs.

struct Cam {
    float r[9];   // row-major world-to-camera rotation
    float t[3];
    float fx, fy, cx, cy, near_plane, far_plane;
};
static_assert(sizeof(Cam) == CAMERA_FLOATS * sizeof(float), "the host uploads CAMERA_FLOATS a camera");

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// stats (MODEL_STATS_WORDS): [0] sum of all coordinates, [1] sum w, [2..4] sum w*p, [5] sum w*|p|^2
// (w = sigmoid opacity). bounds (MODEL_BOUNDS_WORDS): ordered-encoded min x,y,z then max x,y,z
// (pre-set to 0xffffffff / 0 by the host).
static_assert(MODEL_STATS_WORDS == 6 && MODEL_BOUNDS_WORDS == 6, "model_stats' sums and bounds");
extern "C" __global__ void model_stats(
    const float* __restrict__ positions, const float* __restrict__ opacity_logits, unsigned int n,
    double* __restrict__ stats, unsigned int* __restrict__ bounds)
{
    __shared__ double s_acc[MODEL_STATS_WORDS][32];
    __shared__ unsigned int s_bounds[MODEL_BOUNDS_WORDS][32];
    double acc[MODEL_STATS_WORDS] = {0, 0, 0, 0, 0, 0};
    unsigned int lo[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    unsigned int hi[3] = {0u, 0u, 0u};
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float x = positions[3 * i], y = positions[3 * i + 1], z = positions[3 * i + 2];
        double w = (double)sigmoidf(opacity_logits[i]);
        acc[0] += (double)x + (double)y + (double)z;
        acc[1] += w;
        acc[2] += w * x; acc[3] += w * y; acc[4] += w * z;
        acc[5] += w * ((double)x * x + (double)y * y + (double)z * z);
        float p[3] = {x, y, z};
        for (int a = 0; a < 3; ++a) {
            unsigned int o = float_to_ordered(p[a]);
            lo[a] = min(lo[a], o);
            hi[a] = max(hi[a], o);
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        for (int k = 0; k < MODEL_STATS_WORDS; ++k) acc[k] += __shfl_down_sync(0xffffffffu, acc[k], off);
        for (int a = 0; a < 3; ++a) {
            lo[a] = min(lo[a], __shfl_down_sync(0xffffffffu, lo[a], off));
            hi[a] = max(hi[a], __shfl_down_sync(0xffffffffu, hi[a], off));
        }
    }
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        for (int k = 0; k < MODEL_STATS_WORDS; ++k) s_acc[k][warp] = acc[k];
        for (int a = 0; a < 3; ++a) { s_bounds[a][warp] = lo[a]; s_bounds[3 + a][warp] = hi[a]; }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int warps = (blockDim.x + 31) / 32;
        for (int k = 0; k < MODEL_STATS_WORDS; ++k) {
            double s = 0;
            for (unsigned int w = 0; w < warps; ++w) s += s_acc[k][w];
            atomicAdd(&stats[k], s);
        }
        for (int a = 0; a < 3; ++a) {
            unsigned int l = 0xffffffffu, h = 0u;
            for (unsigned int w = 0; w < warps; ++w) { l = min(l, s_bounds[a][w]); h = max(h, s_bounds[3 + a][w]); }
            atomicMin(&bounds[a], l);
            atomicMax(&bounds[3 + a], h);
        }
    }
}

// What decode_project needs from the statistics: the validator's recentring and scale, and
// the floater sphere. `valid` is false when a coordinate is not finite or the model has no
// extent; the host reports that from the statistics it reads back with the metrics.
struct Norm {
    float mean, scale;
    double cx, cy, cz, limit2;
    bool valid;
};

// As the CPU reference's `normalisation_of` and `floater_fraction` (gaussians.rs) derive
// them, in double, with no fused multiply-adds (the host's `Summary::check_normalisation`
// in gpu/mod.rs checks the same statistics afterwards, with the CPU reference's
// `checked_extent`, and reports what is invalid).
__device__ Norm normalisation_of(const double* __restrict__ stats, const unsigned int* __restrict__ bounds,
                                 unsigned int n)
{
    Norm r;
    bool finite = isfinite(stats[0]);
    double extent = 0.0;
    for (int a = 0; a < 3; ++a) {
        float lo = ordered_to_float(bounds[a]), hi = ordered_to_float(bounds[3 + a]);
        finite = finite && isfinite(lo) && isfinite(hi);
        extent = fmax(extent, __dsub_rn((double)hi, (double)lo));
    }
    r.valid = finite && extent > 0.0;
    r.mean = (float)(stats[0] / __dmul_rn(3.0, (double)n));
    r.scale = (float)((double)REF_BBOX_SIZE / extent);
    double w = stats[1];
    if (w > 0.0) {
        r.cx = stats[2] / w; r.cy = stats[3] / w; r.cz = stats[4] / w;
        double mu2 = __dadd_rn(__dadd_rn(__dmul_rn(r.cx, r.cx), __dmul_rn(r.cy, r.cy)), __dmul_rn(r.cz, r.cz));
        double rms2 = fmax(__dsub_rn(stats[5] / w, mu2), 0.0);
        double factor = (double)FLOATER_RMS_FACTOR;
        r.limit2 = __dmul_rn(__dmul_rn(factor, factor), rms2);
    } else {
        r.cx = r.cy = r.cz = 0.0;
        r.limit2 = __longlong_as_double(0x7ff0000000000000ll);  // +inf: no floaters
    }
    return r;
}

// One thread per gaussian: activate, normalise, count floaters, project into every camera.
// Per (view, gaussian) outputs at index v * n + i: xy, conic + opacity, depth, tile rect and
// tile count (0 when culled). The normalisation is derived from model_stats' output on the
// device, once per block, so the host does not wait for it.
extern "C" __global__ void decode_project(
    const float* __restrict__ positions, const float* __restrict__ opacity_logits,
    const float* __restrict__ log_scales, const float* __restrict__ rotations,
    const float* __restrict__ sh_dc, unsigned int n,
    const double* __restrict__ stats, const unsigned int* __restrict__ bounds,
    const Cam* __restrict__ cams, unsigned int views, unsigned int width, unsigned int height,
    unsigned int tiles_x, unsigned int tiles_y,
    float* __restrict__ colors,             // [n, 3]
    float2* __restrict__ xy,                // [views, n]
    float4* __restrict__ conic_opacity,     // [views, n]
    float* __restrict__ depths,             // [views, n]
    uint2* __restrict__ rects,              // [views, n]: (x0 | y0 << 16, x1 | y1 << 16)
    unsigned int* __restrict__ tile_counts, // [views, n]
    unsigned int* __restrict__ floaters)
{
    __shared__ Norm s_norm;
    if (threadIdx.x == 0) s_norm = normalisation_of(stats, bounds, n);
    __syncthreads();
    const Norm nm = s_norm;
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (!nm.valid) {
        for (unsigned int v = 0; v < views; ++v) tile_counts[v * n + i] = 0;
        return;
    }
    const float mean = nm.mean, scale = nm.scale;
    float px = positions[3 * i], py = positions[3 * i + 1], pz = positions[3 * i + 2];
    double dx = (double)px - nm.cx, dy = (double)py - nm.cy, dz = (double)pz - nm.cz;
    if (dx * dx + dy * dy + dz * dz > nm.limit2) atomicAdd(floaters, 1u);

    float m[3] = {(px - mean) * scale, (py - mean) * scale, (pz - mean) * scale};
    float opacity = fminf(fmaxf(sigmoidf(opacity_logits[i]) * (1.0f / scale), 0.0f), 1.0f);
    float s[3] = {expf(log_scales[3 * i]) * scale, expf(log_scales[3 * i + 1]) * scale,
                  expf(log_scales[3 * i + 2]) * scale};
    float q[4] = {rotations[4 * i], rotations[4 * i + 1], rotations[4 * i + 2], rotations[4 * i + 3]};
    float qlen = fmaxf(sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), QUAT_NORM_EPS);
    for (int k = 0; k < 4; ++k) q[k] = q[k] / qlen;
    for (int c = 0; c < 3; ++c) colors[3 * i + c] = 0.5f + SH_C0 * sh_dc[3 * i + c];

    // quat_to_rotmat (normalises again, as gsplat does), then covariance R S S^T R^T.
    float inv = rsqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    float w = q[0] * inv, x = q[1] * inv, y = q[2] * inv, z = q[3] * inv;
    float R[3][3] = {
        {1.f - 2.f * (y * y + z * z), 2.f * (x * y - w * z), 2.f * (x * z + w * y)},
        {2.f * (x * y + w * z), 1.f - 2.f * (x * x + z * z), 2.f * (y * z - w * x)},
        {2.f * (x * z - w * y), 2.f * (y * z + w * x), 1.f - 2.f * (x * x + y * y)}};
    float M[3][3];
    for (int a = 0; a < 3; ++a) for (int b = 0; b < 3; ++b) M[a][b] = R[a][b] * s[b];
    float cov[3][3];
    for (int a = 0; a < 3; ++a) for (int b = 0; b < 3; ++b)
        cov[a][b] = M[a][0] * M[b][0] + M[a][1] * M[b][1] + M[a][2] * M[b][2];

    float W = (float)width, H = (float)height;
    for (unsigned int v = 0; v < views; ++v) {
        const Cam& cam = cams[v];
        unsigned int o = v * n + i;
        tile_counts[o] = 0;
        const float* r = cam.r;
        float pc[3];
        for (int a = 0; a < 3; ++a) pc[a] = r[3 * a] * m[0] + r[3 * a + 1] * m[1] + r[3 * a + 2] * m[2] + cam.t[a];
        if (pc[2] < cam.near_plane || pc[2] > cam.far_plane) continue;
        float rs[3][3], cc[3][3];
        for (int a = 0; a < 3; ++a) for (int b = 0; b < 3; ++b)
            rs[a][b] = r[3 * a] * cov[0][b] + r[3 * a + 1] * cov[1][b] + r[3 * a + 2] * cov[2][b];
        for (int a = 0; a < 3; ++a) for (int b = 0; b < 3; ++b)
            cc[a][b] = rs[a][0] * r[3 * b] + rs[a][1] * r[3 * b + 1] + rs[a][2] * r[3 * b + 2];
        float tan_fovx = 0.5f * W / cam.fx, tan_fovy = 0.5f * H / cam.fy;
        float lim_x_pos = (W - cam.cx) / cam.fx + 0.3f * tan_fovx;
        float lim_x_neg = cam.cx / cam.fx + 0.3f * tan_fovx;
        float lim_y_pos = (H - cam.cy) / cam.fy + 0.3f * tan_fovy;
        float lim_y_neg = cam.cy / cam.fy + 0.3f * tan_fovy;
        float rz = 1.f / pc[2], rz2 = rz * rz;
        float tx = pc[2] * fminf(lim_x_pos, fmaxf(-lim_x_neg, pc[0] * rz));
        float ty = pc[2] * fminf(lim_y_pos, fmaxf(-lim_y_neg, pc[1] * rz));
        float J[2][3] = {{cam.fx * rz, 0.f, -cam.fx * tx * rz2}, {0.f, cam.fy * rz, -cam.fy * ty * rz2}};
        float jc[2][3];
        for (int a = 0; a < 2; ++a) for (int b = 0; b < 3; ++b)
            jc[a][b] = J[a][0] * cc[0][b] + J[a][1] * cc[1][b] + J[a][2] * cc[2][b];
        float ca = jc[0][0] * J[0][0] + jc[0][1] * J[0][1] + jc[0][2] * J[0][2];
        float cb = jc[0][0] * J[1][0] + jc[0][1] * J[1][1] + jc[0][2] * J[1][2];
        float cd = jc[1][0] * J[1][0] + jc[1][1] * J[1][1] + jc[1][2] * J[1][2];
        float mx = cam.fx * pc[0] * rz + cam.cx, my = cam.fy * pc[1] * rz + cam.cy;
        ca += EPS2D;
        cd += EPS2D;
        float det = ca * cd - cb * cb;
        if (det <= 0.f) continue;
        float inv_det = 1.f / det;
        if (opacity < ALPHA_MIN) continue;
        float extend = fminf(EXTEND_MAX, sqrtf(2.0f * logf(opacity / ALPHA_MIN)));
        float rx = ceilf(extend * sqrtf(ca)), ry = ceilf(extend * sqrtf(cd));
        if (rx <= 0.f && ry <= 0.f) continue;
        if (mx + rx <= 0.f || mx - rx >= W || my + ry <= 0.f || my - ry >= H) continue;
        int irx = (int)rx, iry = (int)ry;
        if (irx <= 0 || iry <= 0) continue;
        float tsz = (float)TILE_SIZE;
        float tcx = mx / tsz, tcy = my / tsz, trx = (float)irx / tsz, trY = (float)iry / tsz;
        // gsplat casts to unsigned, which saturates negatives at 0; clamp explicitly.
        unsigned int x0 = min((unsigned int)fmaxf(floorf(tcx - trx), 0.f), tiles_x);
        unsigned int y0 = min((unsigned int)fmaxf(floorf(tcy - trY), 0.f), tiles_y);
        unsigned int x1 = min((unsigned int)fmaxf(ceilf(tcx + trx), 0.f), tiles_x);
        unsigned int y1 = min((unsigned int)fmaxf(ceilf(tcy + trY), 0.f), tiles_y);
        xy[o] = make_float2(mx, my);
        conic_opacity[o] = make_float4(cd * inv_det, -cb * inv_det, ca * inv_det, opacity);
        depths[o] = pc[2];
        rects[o] = make_uint2(x0 | (y0 << 16), x1 | (y1 << 16));
        tile_counts[o] = (y1 - y0) * (x1 - x0);
    }
}
