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
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int box[4] = {0x7fffffff, 0x7fffffff, -1, -1};
    if (x < width && y < height) {
        float4 p = v[y * width + x];
        if (p.w >= SILHOUETTE_ALPHA) {
            a[0] = 1.0; a[1] = p.x; a[2] = p.y; a[3] = p.z;
            float mx = fmaxf(p.x, fmaxf(p.y, p.z)), mn = fminf(p.x, fminf(p.y, p.z));
            a[4] = mx > 0.f ? (double)((mx - mn) / mx) : 0.0;
            box[0] = x; box[1] = y; box[2] = x; box[3] = y;
            if (x > 0 && y > 0 && x + 1 < width && y + 1 < height) {
                float4 u = v[(y - 1) * width + x], d = v[(y + 1) * width + x];
                float4 l = v[y * width + x - 1], r = v[y * width + x + 1];
                #define LUM(q) (0.299f * (q).x + 0.587f * (q).y + 0.114f * (q).z)
                float lap = LUM(u) + LUM(d) + LUM(l) + LUM(r) - 4.0f * LUM(p);
                #undef LUM
                a[5] = 1.0; a[6] = lap; a[7] = (double)lap * (double)lap;
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
        for (int k = 0; k < 8; ++k) s_acc[k][warp] = a[k];
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
// of 16x16 outputs, separable window through shared memory, one channel at a time; the block's
// sum goes to ssim_sum[z].
extern "C" __global__ void ssim_adjacent(const float4* __restrict__ img, unsigned int width, unsigned int height,
                                         const float* __restrict__ window, double* __restrict__ ssim_sum)
{
    __shared__ float s_a[SSIM_IN][SSIM_IN];
    __shared__ float s_b[SSIM_IN][SSIM_IN];
    __shared__ float s_h[5][SSIM_IN][SSIM_OUT];
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
    double sum = 0.0;
    for (int c = 0; c < 3; ++c) {
        for (int k = tid; k < SSIM_IN * SSIM_IN; k += SSIM_OUT * SSIM_OUT) {
            int ly = k / SSIM_IN, lx = k % SSIM_IN;
            int gx = min(ox - SSIM_R + lx, (int)width - 1), gy = min(oy - SSIM_R + ly, (int)height - 1);
            float4 pa = A[gy * width + gx], pb = B[gy * width + gx];
            s_a[ly][lx] = c == 0 ? pa.x : (c == 1 ? pa.y : pa.z);
            s_b[ly][lx] = c == 0 ? pb.x : (c == 1 ? pb.y : pb.z);
        }
        __syncthreads();
        for (int k = tid; k < SSIM_IN * SSIM_OUT; k += SSIM_OUT * SSIM_OUT) {
            int ly = k / SSIM_OUT, lx = k % SSIM_OUT;
            float m1 = 0.f, m2 = 0.f, s11 = 0.f, s22 = 0.f, s12 = 0.f;
            for (int t = 0; t < SSIM_WINDOW; ++t) {
                float u = s_a[ly][lx + t], v = s_b[ly][lx + t];
                m1 += w[t] * u; m2 += w[t] * v; s11 += w[t] * u * u; s22 += w[t] * v * v; s12 += w[t] * u * v;
            }
            s_h[0][ly][lx] = m1; s_h[1][ly][lx] = m2; s_h[2][ly][lx] = s11; s_h[3][ly][lx] = s22; s_h[4][ly][lx] = s12;
        }
        __syncthreads();
        if (valid) {
            float m1 = 0.f, m2 = 0.f, s11 = 0.f, s22 = 0.f, s12 = 0.f;
            for (int t = 0; t < SSIM_WINDOW; ++t) {
                int ly = threadIdx.y + t;
                m1 += w[t] * s_h[0][ly][threadIdx.x]; m2 += w[t] * s_h[1][ly][threadIdx.x];
                s11 += w[t] * s_h[2][ly][threadIdx.x]; s22 += w[t] * s_h[3][ly][threadIdx.x];
                s12 += w[t] * s_h[4][ly][threadIdx.x];
            }
            float sx = s11 - m1 * m1, sy = s22 - m2 * m2, sxy = s12 - m1 * m2;
            float s = ((2.f * m1 * m2 + SSIM_C1) * (2.f * sxy + SSIM_C2)) /
                      ((m1 * m1 + m2 * m2 + SSIM_C1) * (sx + sy + SSIM_C2));
            sum += (double)s;
        }
        __syncthreads();
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
