// Metrics on the rendered views, accumulated per view in doubles: silhouette coverage and
// bounding box, mean colour and saturation inside the silhouette, the variance of the
// 4-neighbour Laplacian of luminance inside it, and SSIM between adjacent views
// (torchmetrics: 11x11 Gaussian window, sigma 1.5, data range 1, windows wholly inside the
// image). CPU reference: cpu/metrics.rs.

// acc per view (8 doubles): count, r, g, b, saturation, laplacian n, sum, sum of squares.
// bbox per view (4 ints): min x, min y, max x, max y (pre-set to INT_MAX, INT_MAX, -1, -1).
extern "C" __global__ void view_metrics(const float4* __restrict__ img, unsigned int width, unsigned int height,
                                        double* __restrict__ acc, int* __restrict__ bbox)
{
    __shared__ double s_acc[8][8];
    __shared__ int s_box[4][8];
    unsigned int view = blockIdx.z;
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    const float4* v = img + (size_t)view * width * height;
    // Per-pixel terms and warp sums in float (32 pixels lose nothing that matters); block
    // sums and the per-view totals in double.
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int box[4] = {0x7fffffff, 0x7fffffff, -1, -1};
    if (x < width && y < height) {
        float4 p = v[y * width + x];
        if (p.w >= SILHOUETTE_ALPHA) {
            a[0] = 1.0f; a[1] = p.x; a[2] = p.y; a[3] = p.z;
            float mx = fmaxf(p.x, fmaxf(p.y, p.z)), mn = fminf(p.x, fminf(p.y, p.z));
            a[4] = mx > 0.f ? (mx - mn) / mx : 0.0f;
            box[0] = x; box[1] = y; box[2] = x; box[3] = y;
            if (x > 0 && y > 0 && x + 1 < width && y + 1 < height) {
                float4 u = v[(y - 1) * width + x], d = v[(y + 1) * width + x];
                float4 l = v[y * width + x - 1], r = v[y * width + x + 1];
                #define LUM(q) (0.299f * (q).x + 0.587f * (q).y + 0.114f * (q).z)
                float lap = LUM(u) + LUM(d) + LUM(l) + LUM(r) - 4.0f * LUM(p);
                #undef LUM
                a[5] = 1.0f; a[6] = lap; a[7] = lap * lap;
            }
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        for (int k = 0; k < 8; ++k) a[k] += __shfl_down_sync(0xffffffffu, a[k], off);
        box[0] = min(box[0], __shfl_down_sync(0xffffffffu, box[0], off));
        box[1] = min(box[1], __shfl_down_sync(0xffffffffu, box[1], off));
        box[2] = max(box[2], __shfl_down_sync(0xffffffffu, box[2], off));
        box[3] = max(box[3], __shfl_down_sync(0xffffffffu, box[3], off));
    }
    unsigned int tid = threadIdx.y * blockDim.x + threadIdx.x;
    unsigned int lane = tid & 31, warp = tid >> 5;
    if (lane == 0) {
        for (int k = 0; k < 8; ++k) s_acc[k][warp] = (double)a[k];
        for (int k = 0; k < 4; ++k) s_box[k][warp] = box[k];
    }
    __syncthreads();
    if (tid == 0) {
        unsigned int warps = (blockDim.x * blockDim.y + 31) / 32;
        for (int k = 0; k < 8; ++k) {
            double s = 0;
            for (unsigned int w = 0; w < warps; ++w) s += s_acc[k][w];
            if (s != 0.0) atomicAdd(&acc[view * 8 + k], s);
        }
        int b0 = 0x7fffffff, b1 = 0x7fffffff, b2 = -1, b3 = -1;
        for (unsigned int w = 0; w < warps; ++w) {
            b0 = min(b0, s_box[0][w]); b1 = min(b1, s_box[1][w]);
            b2 = max(b2, s_box[2][w]); b3 = max(b3, s_box[3][w]);
        }
        if (b2 >= 0) {
            atomicMin(&bbox[view * 4], b0); atomicMin(&bbox[view * 4 + 1], b1);
            atomicMax(&bbox[view * 4 + 2], b2); atomicMax(&bbox[view * 4 + 3], b3);
        }
    }
}

#define SSIM_R (SSIM_WINDOW / 2)
#define SSIM_OUT 16
#define SSIM_IN (SSIM_OUT + 2 * SSIM_R)

// SSIM of view z against view z + 1 over output positions [R, W - R) x [R, H - R): one block
// of 16x16 outputs; both input patches are loaded once, then a separable window per channel
// through shared memory; the block's sum goes to ssim_sum[z].
extern "C" __global__ void ssim_adjacent(const float4* __restrict__ img, unsigned int width, unsigned int height,
                                         const float* __restrict__ window, double* __restrict__ ssim_sum)
{
    __shared__ float4 s_a[SSIM_IN][SSIM_IN];
    __shared__ float4 s_b[SSIM_IN][SSIM_IN];
    // Horizontal sums of the five moments for all three channels at once: each patch pixel
    // is read from shared memory once per tap, not once per channel.
    __shared__ float s_h[15][SSIM_IN][SSIM_OUT];
    __shared__ double s_red[8];
    unsigned int pair = blockIdx.z;
    const float4* A = img + (size_t)pair * width * height;
    const float4* B = img + (size_t)(pair + 1) * width * height;
    int ox = blockIdx.x * SSIM_OUT + SSIM_R, oy = blockIdx.y * SSIM_OUT + SSIM_R;  // first output pixel
    int tid = threadIdx.y * SSIM_OUT + threadIdx.x;
    float w[SSIM_WINDOW];
    for (int k = 0; k < SSIM_WINDOW; ++k) w[k] = window[k];
    int out_x = ox + threadIdx.x, out_y = oy + threadIdx.y;
    bool valid = out_x < (int)width - SSIM_R && out_y < (int)height - SSIM_R;
    for (int k = tid; k < SSIM_IN * SSIM_IN; k += SSIM_OUT * SSIM_OUT) {
        int ly = k / SSIM_IN, lx = k % SSIM_IN;
        int gx = min(ox - SSIM_R + lx, (int)width - 1), gy = min(oy - SSIM_R + ly, (int)height - 1);
        s_a[ly][lx] = A[gy * width + gx];
        s_b[ly][lx] = B[gy * width + gx];
    }
    __syncthreads();
    for (int k = tid; k < SSIM_IN * SSIM_OUT; k += SSIM_OUT * SSIM_OUT) {
        int ly = k / SSIM_OUT, lx = k % SSIM_OUT;
        float m[15];
        for (int q = 0; q < 15; ++q) m[q] = 0.f;
        for (int t = 0; t < SSIM_WINDOW; ++t) {
            float4 pa = s_a[ly][lx + t], pb = s_b[ly][lx + t];
            float u[3] = {pa.x, pa.y, pa.z}, v[3] = {pb.x, pb.y, pb.z};
            for (int c = 0; c < 3; ++c) {
                m[5 * c] += w[t] * u[c]; m[5 * c + 1] += w[t] * v[c];
                m[5 * c + 2] += w[t] * u[c] * u[c]; m[5 * c + 3] += w[t] * v[c] * v[c];
                m[5 * c + 4] += w[t] * u[c] * v[c];
            }
        }
        for (int q = 0; q < 15; ++q) s_h[q][ly][lx] = m[q];
    }
    __syncthreads();
    double sum = 0.0;
    if (valid) {
        for (int c = 0; c < 3; ++c) {
            float m1 = 0.f, m2 = 0.f, s11 = 0.f, s22 = 0.f, s12 = 0.f;
            for (int t = 0; t < SSIM_WINDOW; ++t) {
                int ly = threadIdx.y + t;
                m1 += w[t] * s_h[5 * c][ly][threadIdx.x]; m2 += w[t] * s_h[5 * c + 1][ly][threadIdx.x];
                s11 += w[t] * s_h[5 * c + 2][ly][threadIdx.x]; s22 += w[t] * s_h[5 * c + 3][ly][threadIdx.x];
                s12 += w[t] * s_h[5 * c + 4][ly][threadIdx.x];
            }
            float sx = s11 - m1 * m1, sy = s22 - m2 * m2, sxy = s12 - m1 * m2;
            float s = ((2.f * m1 * m2 + SSIM_C1) * (2.f * sxy + SSIM_C2)) /
                      ((m1 * m1 + m2 * m2 + SSIM_C1) * (sx + sy + SSIM_C2));
            sum += (double)s;
        }
    }
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);
    if ((tid & 31) == 0) s_red[tid >> 5] = sum;
    __syncthreads();
    if (tid == 0) {
        double s = 0;
        for (int k = 0; k < (SSIM_OUT * SSIM_OUT) / 32; ++k) s += s_red[k];
        atomicAdd(&ssim_sum[pair], s);
    }
}

// Resets the accumulators before a render's metrics, on the device (no host copy): acc to 0,
// bbox to (INT_MAX, INT_MAX, -1, -1), ssim_sum to 0.
extern "C" __global__ void reset_metrics(double* __restrict__ acc, int* __restrict__ bbox,
                                         double* __restrict__ ssim_sum, unsigned int views)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < views * 8) acc[i] = 0.0;
    if (i < views * 4) bbox[i] = (i % 4 < 2) ? 0x7fffffff : -1;
    if (i < views) ssim_sum[i] = 0.0;
}

// Packs everything the host needs into one array, so one copy brings it back:
// [acc: views * 8][bbox: views * 4][ssim_sum: views][floaters: 1].
extern "C" __global__ void pack_metrics(const double* __restrict__ acc, const int* __restrict__ bbox,
                                        const double* __restrict__ ssim_sum,
                                        const unsigned int* __restrict__ floaters, unsigned int views,
                                        double* __restrict__ out)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < views * 8) out[i] = acc[i];
    else if (i < views * 12) out[i] = (double)bbox[i - views * 8];
    else if (i < views * 13) out[i] = ssim_sum[i - views * 12];
    else if (i == views * 13) out[i] = (double)floaters[0];
}
