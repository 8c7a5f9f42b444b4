// Front-to-back blending, one 16x16 block per (tile, view), as gsplat 1.5.3's
// RasterizeToPixels3DGSFwd.cu: the tile's gaussians, in depth order, are loaded in batches
// into shared memory; alpha = min(0.999, o * exp(-sigma)), skipped under 1/255 or for
// negative sigma, and a pixel stops before transmittance would reach 1e-4. White background
// under what is left; RGB clipped to [0, 1] as the validator clips it. CPU reference:
// cpu/raster.rs.

extern "C" __global__ void rasterize(
    const uint2* __restrict__ ranges, const unsigned int* __restrict__ sorted_values,
    const float2* __restrict__ xy, const float4* __restrict__ conic_opacity,
    const float* __restrict__ colors, unsigned int n,
    unsigned int width, unsigned int height, unsigned int tiles_x, unsigned int tile_bits,
    float4* __restrict__ out)  // [views, height, width]: r, g, b, alpha
{
    __shared__ float2 s_xy[TILE_SIZE * TILE_SIZE];
    __shared__ float4 s_co[TILE_SIZE * TILE_SIZE];
    __shared__ float3 s_rgb[TILE_SIZE * TILE_SIZE];
    unsigned int view = blockIdx.z;
    unsigned int tile = blockIdx.y * tiles_x + blockIdx.x;
    unsigned int px_x = blockIdx.x * TILE_SIZE + threadIdx.x;
    unsigned int px_y = blockIdx.y * TILE_SIZE + threadIdx.y;
    unsigned int tr = threadIdx.y * TILE_SIZE + threadIdx.x;
    const unsigned int block_size = TILE_SIZE * TILE_SIZE;
    bool inside = px_x < width && px_y < height;
    bool done = !inside;
    float fx = (float)px_x + 0.5f, fy = (float)px_y + 0.5f;
    uint2 range = ranges[(view << tile_bits) | tile];
    float T = 1.0f;
    float r = 0.f, g = 0.f, b = 0.f;
    for (unsigned int start = range.x; start < range.y; start += block_size) {
        if (__syncthreads_count(done) >= block_size) break;
        unsigned int k = start + tr;
        if (k < range.y) {
            unsigned int o = sorted_values[k];
            unsigned int gi = o % n;
            s_xy[tr] = xy[o];
            s_co[tr] = conic_opacity[o];
            s_rgb[tr] = make_float3(colors[3 * gi], colors[3 * gi + 1], colors[3 * gi + 2]);
        }
        __syncthreads();
        unsigned int batch = min(block_size, range.y - start);
        for (unsigned int t = 0; t < batch && !done; ++t) {
            float4 co = s_co[t];
            float dx = s_xy[t].x - fx, dy = s_xy[t].y - fy;
            float sigma = 0.5f * (co.x * dx * dx + co.z * dy * dy) + co.y * dx * dy;
            float alpha = fminf(ALPHA_MAX, co.w * __expf(-sigma));
            if (sigma < 0.f || alpha < ALPHA_MIN) continue;
            float next_T = T * (1.0f - alpha);
            if (next_T <= T_MIN) { done = true; break; }
            float vis = alpha * T;
            float3 c = s_rgb[t];
            r += c.x * vis; g += c.y * vis; b += c.z * vis;
            T = next_T;
        }
    }
    if (inside) {
        out[((size_t)view * height + px_y) * width + px_x] = make_float4(
            fminf(fmaxf(r + T, 0.f), 1.f), fminf(fmaxf(g + T, 0.f), 1.f), fminf(fmaxf(b + T, 0.f), 1.f), 1.0f - T);
    }
}
