// Front-to-back blending, one 256-thread block per (16x16 tile, view), as gsplat 1.5.3's
// RasterizeToPixels3DGSFwd.cu: the tile's gaussians, in depth order, are loaded in batches
// into shared memory; alpha = min(0.999, o * exp(-sigma)), skipped under 1/255 or for
// negative sigma, and a pixel stops before transmittance would reach 1e-4. White background
// under what is left; RGB clipped to [0, 1] as the validator clips it. CPU reference:
// cpu/raster.rs.
//
// Unlike gsplat, each warp shades an 8x4 sub-tile and skips, as one, every gaussian whose
// alpha cannot reach 1/255 anywhere in it: the box of the ellipse sigma <= ln(255 o), a little
// enlarged, is computed once per gaussian as the batch is loaded. Skipped gaussians would
// have been skipped pixel by pixel anyway, so the image is the same; on models of small
// gaussians most (gaussian, warp) pairs are skipped. The test is done 32 gaussians at a time,
// one per lane, and a ballot leaves the warp only the hits to walk.
//
// The launch starts with the tiles heavy_tiles (sort.cu) found crowded, then takes the rest
// in tile order: a centred object's few crowded tiles no longer start last.

// RASTER_THREADS (the prelude, gpu/layout.rs): one thread per pixel of a tile.
#define BLOCK RASTER_THREADS
// Enlargement of the culling ellipse, so float rounding in sigma never culls a contributor.
#define CULL_SCALE 1.02f
#define CULL_PAD 0.05f
#define LOG2E 1.4426950408889634f

// 2^x by the SFU (what __expf uses after scaling its argument by log2 e).
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// The warp's least (MAX false) or greatest (MAX true) value.
template <bool MAX>
__device__ __forceinline__ unsigned int warp_extreme(unsigned int v)
{
#if __CUDA_ARCH__ >= 800
    return MAX ? __reduce_max_sync(0xffffffffu, v) : __reduce_min_sync(0xffffffffu, v);
#else
    for (int off = 16; off > 0; off >>= 1) {
        unsigned int other = __shfl_xor_sync(0xffffffffu, v, off);
        v = MAX ? max(v, other) : min(v, other);
    }
    return v;
#endif
}

// Whether sigma can fall to the cull bound anywhere in [x0, x1] x [y0, y1] (pixel centres):
// the ellipse, not its box, against the sub-tile. Sigma is convex, so when the centre lies
// outside, its least value is on an edge that faces the centre, at the edge's own minimiser
// (dy = -b dx / c along a vertical edge, dx = -b dy / a along a horizontal one) clamped to
// the edge. A thin, tilted gaussian's box covers sub-tiles its ellipse misses.
__device__ __forceinline__ bool ellipse_reaches(float2 mu, float4 co, float4 cull, float x0, float x1,
                                                float y0, float y1)
{
    float dxl = x0 - mu.x, dxh = x1 - mu.x, dyl = y0 - mu.y, dyh = y1 - mu.y;
    bool in_x = dxl <= 0.f && dxh >= 0.f, in_y = dyl <= 0.f && dyh >= 0.f;
    if (in_x && in_y) return true;
    float least = 3.0e38f;
    if (!in_x) {
        float dx = dxl > 0.f ? dxl : dxh;
        float dy = fminf(fmaxf(cull.y * dx, dyl), dyh);
        least = fminf(least, 0.5f * (co.x * dx * dx + co.z * dy * dy) + co.y * dx * dy);
    }
    if (!in_y) {
        float dy = dyl > 0.f ? dyl : dyh;
        float dx = fminf(fmaxf(cull.z * dy, dxl), dxh);
        least = fminf(least, 0.5f * (co.x * dx * dx + co.z * dy * dy) + co.y * dx * dy);
    }
    return !(least > cull.x);  // NaN passes: cull only what is surely out
}

// At most 40 registers, so six blocks fit an SM: the tile-list walk is bound on latency, and
// a 43-register build (five blocks) was 5-7 % slower on the random models.
extern "C" __global__ void __launch_bounds__(BLOCK, 6) rasterize(
    const uint2* __restrict__ ranges, const unsigned int* __restrict__ sorted_values,
    const float2* __restrict__ xy, const float4* __restrict__ conic_opacity,
    const float* __restrict__ colors, unsigned int n,
    unsigned int width, unsigned int height, unsigned int tiles_x, unsigned int tile_bits,
    const unsigned int* __restrict__ heavy, const unsigned int* __restrict__ heavy_count,
    unsigned int heavy_cap, unsigned int tiles,
    float4* __restrict__ out)  // [views, height, width]: r, g, b, alpha
{
    __shared__ float2 s_xy[BLOCK];
    __shared__ float4 s_co[BLOCK];
    __shared__ float4 s_rgb[BLOCK];  // one 16-byte load per hit
    // The exponent of alpha in base 2, -sigma * log2(e), as a quadratic in (dx, dy), with
    // log2(opacity) beside it: a hit costs one exp2 and no scaling.
    __shared__ float4 s_pow[BLOCK];
    __shared__ float4 s_box[BLOCK];  // x0, x1, y0, y1 where alpha may reach ALPHA_MIN
    __shared__ float4 s_cull[BLOCK]; // sigma bound, -b/c, -b/a (edge minimisers), unused
    const unsigned int tr = threadIdx.x;
    const unsigned int warp = tr >> 5, lane = tr & 31;
    // Warps in two columns of four rows, each an 8x4 block of pixels.
    // The first heavy_cap blocks take the crowded tiles heavy_tiles listed (and leave when
    // there are fewer); the rest take every (view, tile) in tile order, skipping those.
    unsigned int slot;
    uint2 range;
    if (blockIdx.x < heavy_cap) {
        if (blockIdx.x >= min(*heavy_count, heavy_cap)) return;
        slot = heavy[HEAVY_WORDS * blockIdx.x];
        range = make_uint2(heavy[HEAVY_WORDS * blockIdx.x + 1], heavy[HEAVY_WORDS * blockIdx.x + 2]);
    } else {
        unsigned int b = blockIdx.x - heavy_cap;
        slot = ((b / tiles) << tile_bits) | (b % tiles);
        range = ranges[slot];
        if (range.x == 0xffffffffu) return;  // taken by a heavy block
    }
    const unsigned int view = slot >> tile_bits, tile = slot & ((1u << tile_bits) - 1u);
    const unsigned int sub_x = (tile % tiles_x) * TILE_SIZE + (warp & 1) * 8;
    const unsigned int sub_y = (tile / tiles_x) * TILE_SIZE + (warp >> 1) * 4;
    const unsigned int px_x = sub_x + (lane & 7);
    const unsigned int px_y = sub_y + (lane >> 3);
    bool inside = px_x < width && px_y < height;
    bool done = !inside;
    float fx = (float)px_x + 0.5f, fy = (float)px_y + 0.5f;
    float T = 1.0f;
    float r = 0.f, g = 0.f, b = 0.f;
    for (unsigned int start = range.x; start < range.y; start += BLOCK) {
        if (__syncthreads_count(done) >= BLOCK) break;
        unsigned int k = start + tr;
        if (k < range.y) {
            unsigned int o = sorted_values[k];
            unsigned int gi = o % n;
            float2 p = xy[o];
            float4 co = conic_opacity[o];
            s_xy[tr] = p;
            s_co[tr] = co;
            s_rgb[tr] = make_float4(colors[3 * gi], colors[3 * gi + 1], colors[3 * gi + 2], 0.f);
            s_pow[tr] = make_float4(-0.5f * LOG2E * co.x, -LOG2E * co.y, -0.5f * LOG2E * co.z, __log2f(co.w));
            float level = logf(255.0f * co.w);  // sigma above this: alpha < 1/255
            float det = co.x * co.z - co.y * co.y;
            float4 box, cull = make_float4(__int_as_float(0x7f800000), 0.f, 0.f, 0.f);  // +inf: no bound
            if (!(level > 0.0f)) {
                box = make_float4(1.0f, -1.0f, 1.0f, -1.0f);  // never contributes
            } else if (!(det > 0.0f) || !(co.x > 0.0f) || !(co.z > 0.0f)) {
                box = make_float4(-3.0e38f, 3.0e38f, -3.0e38f, 3.0e38f);  // no culling
            } else {
                float bound = level * CULL_SCALE + CULL_PAD;
                float q = 2.0f * bound / det;
                float ex = sqrtf(q * co.z) + CULL_PAD, ey = sqrtf(q * co.x) + CULL_PAD;
                box = make_float4(p.x - ex, p.x + ex, p.y - ey, p.y + ey);
                cull = make_float4(bound, -co.y / co.z, -co.y / co.x, 0.f);
            }
            s_box[tr] = box;
            s_cull[tr] = cull;
        }
        __syncthreads();
        unsigned int batch = min((unsigned int)BLOCK, range.y - start);
        // 32 gaussians at a time: each lane tests one against the warp's sub-tile, a ballot
        // gathers the hits, and the warp blends only those, in depth order.
        for (unsigned int chunk = 0; chunk < batch; chunk += 32) {
            if (__all_sync(0xffffffffu, done)) break;
            // Cull against the box of the warp's unfinished pixels, not the whole sub-tile:
            // once most of it has saturated, what the rest can see is much less.
            float ax0 = (float)warp_extreme<false>(done ? 0xffffu : px_x) + 0.5f;
            float ax1 = (float)warp_extreme<true>(done ? 0u : px_x) + 0.5f;
            float ay0 = (float)warp_extreme<false>(done ? 0xffffu : px_y) + 0.5f;
            float ay1 = (float)warp_extreme<true>(done ? 0u : px_y) + 0.5f;
            unsigned int mine = chunk + lane;
            bool hit = false;
            if (mine < batch) {
                float4 box = s_box[mine];
                hit = !(box.y < ax0 || box.x > ax1 || box.w < ay0 || box.z > ay1);
                if (hit) hit = ellipse_reaches(s_xy[mine], s_co[mine], s_cull[mine], ax0, ax1, ay0, ay1);
            }
            unsigned int hits = __ballot_sync(0xffffffffu, hit);
            while (hits != 0u && !done) {
                unsigned int t = chunk + (unsigned int)(__ffs(hits) - 1);
                hits &= hits - 1u;
                float4 pw = s_pow[t];
                float2 m = s_xy[t];
                float dx = m.x - fx, dy = m.y - fy;
                float power = pw.x * dx * dx + pw.z * dy * dy + pw.y * dx * dy;  // -sigma log2 e
                float alpha = fminf(ALPHA_MAX, fast_exp2(power + pw.w));
                if (power > 0.f || alpha < ALPHA_MIN) continue;
                float next_T = T * (1.0f - alpha);
                if (next_T <= T_MIN) { done = true; break; }
                float vis = alpha * T;
                float4 c = s_rgb[t];
                r += c.x * vis; g += c.y * vis; b += c.z * vis;
                T = next_T;
            }
        }
    }
    if (inside) {
        out[((size_t)view * height + px_y) * width + px_x] = make_float4(
            fminf(fmaxf(r + T, 0.f), 1.f), fminf(fmaxf(g + T, 0.f), 1.f), fminf(fmaxf(b + T, 0.f), 1.f), 1.0f - T);
    }
}
