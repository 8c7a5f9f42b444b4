// The validator's scorer on the GPU, beside cuBLAS for every matrix product: the 8-bit views,
// DINOv2's input and the elementwise/row steps of its forward (LayerNorm, bias + GELU,
// residual + layer scale, softmax, the quality head), LPIPS's input and AlexNet's steps
// (im2col, bias + ReLU, max-pool) and its per-pair distance, and the packing of the
// results. Each step is PyTorch's operation, in PyTorch's order where it matters (see the
// CPU reference, scorer/cpu, and VALIDATOR_SCORING.md §4, §5, §8). Constants shared with
// Rust come from the prelude (constants.rs).

#define WARP 32

__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// The validator's `(img * 255).to(torch.uint8)` then `/ 255` (Rust's `as u8` saturates and
// sends NaN to 0, as fmaxf/fminf do here).
__device__ __forceinline__ float to_8bit(float x) {
    float v = x * 255.0f;
    return (float)(unsigned int)fminf(fmaxf(v, 0.0f), 255.0f) / 255.0f;
}

// --- the 8-bit views, planar (view, channel, row, column) ---------------------------------

// From the renderer's RGBA float image buffer (view-major).
extern "C" __global__ void planes_from_render(const float4* __restrict__ img, unsigned int pixels,
                                              unsigned int views, float* __restrict__ planes)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)pixels * views) return;
    size_t v = i / pixels, p = i % pixels;
    float4 q = img[i];
    float* out = planes + v * 3 * pixels + p;
    out[0] = to_8bit(q.x);
    out[pixels] = to_8bit(q.y);
    out[2 * (size_t)pixels] = to_8bit(q.z);
}

// From 8-bit RGB, height x width x 3 per view.
extern "C" __global__ void planes_from_rgb8(const unsigned char* __restrict__ rgb, unsigned int pixels,
                                            unsigned int views, float* __restrict__ planes)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)pixels * views) return;
    size_t v = i / pixels, p = i % pixels;
    float* out = planes + v * 3 * pixels + p;
    out[0] = (float)rgb[3 * i] / 255.0f;
    out[pixels] = (float)rgb[3 * i + 1] / 255.0f;
    out[2 * (size_t)pixels] = (float)rgb[3 * i + 2] / 255.0f;
}

// --- resizes (PyTorch's upsample kernels, align_corners=False, no antialias) -------------

// `F.interpolate(mode="bilinear")` of one plane at output (ox, oy); scale = in / out.
__device__ float bilinear_at(const float* __restrict__ plane, int in_w, int in_h, float scale_x,
                             float scale_y, int ox, int oy)
{
    float sy = fmaxf(scale_y * (oy + 0.5f) - 0.5f, 0.0f);
    float sx = fmaxf(scale_x * (ox + 0.5f) - 0.5f, 0.0f);
    int y0 = (int)sy, x0 = (int)sx;
    int y1 = y0 + (y0 < in_h - 1 ? 1 : 0), x1 = x0 + (x0 < in_w - 1 ? 1 : 0);
    float ly = sy - y0, lx = sx - x0, hy = 1.0f - ly, hx = 1.0f - lx;
    return hy * (hx * plane[y0 * in_w + x0] + lx * plane[y0 * in_w + x1]) +
           ly * (hx * plane[y1 * in_w + x0] + lx * plane[y1 * in_w + x1]);
}

__device__ __forceinline__ float cubic1(float x) {  // |x| <= 1
    return ((BICUBIC_A + 2.0f) * x - (BICUBIC_A + 3.0f)) * x * x + 1.0f;
}
__device__ __forceinline__ float cubic2(float x) {  // 1 < |x| < 2
    return ((BICUBIC_A * x - 5.0f * BICUBIC_A) * x + 8.0f * BICUBIC_A) * x - 4.0f * BICUBIC_A;
}
__device__ __forceinline__ float cubic_interp(float x0, float x1, float x2, float x3, float t) {
    return x0 * cubic2(t + 1.0f) + x1 * cubic1(t) + x2 * cubic1(1.0f - t) + x3 * cubic2(2.0f - t);
}

// `F.interpolate(mode="bicubic")` of one plane at output (ox, oy): taps clamped to the border.
__device__ float bicubic_at(const float* __restrict__ plane, int in_w, int in_h, float scale_x,
                            float scale_y, int ox, int oy)
{
    float ry = scale_y * (oy + 0.5f) - 0.5f, rx = scale_x * (ox + 0.5f) - 0.5f;
    float fy = floorf(ry), fx = floorf(rx);
    int iy = (int)fy, ix = (int)fx;
    float ty = ry - fy, tx = rx - fx;
    float rows[4];
    #pragma unroll
    for (int k = 0; k < 4; ++k) {
        const float* r = plane + min(max(iy - 1 + k, 0), in_h - 1) * in_w;
        rows[k] = cubic_interp(r[min(max(ix - 1, 0), in_w - 1)], r[min(max(ix, 0), in_w - 1)],
                               r[min(max(ix + 1, 0), in_w - 1)], r[min(max(ix + 2, 0), in_w - 1)], tx);
    }
    return cubic_interp(rows[0], rows[1], rows[2], rows[3], ty);
}

// --- DINOv2 --------------------------------------------------------------------------------

// DINOv2's input as the patch embedding's im2col: the views resized to size x size
// (bilinear; the identity at the render size), normalised with ImageNet's mean and std, cut
// into patch x patch patches. cols[(view * grid² + patch)][c * patch² + ky * patch + kx].
extern "C" __global__ void iqa_patches(const float* __restrict__ planes, unsigned int in_w,
                                       unsigned int in_h, unsigned int views, unsigned int size,
                                       unsigned int patch, float* __restrict__ cols)
{
    unsigned int grid = size / patch, kk = 3 * patch * patch;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)views * grid * grid * kk) return;
    unsigned int k = i % kk;
    size_t row = i / kk;
    unsigned int p = row % (grid * grid), v = row / (grid * grid);
    unsigned int c = k / (patch * patch), ky = (k / patch) % patch, kx = k % patch;
    int oy = (p / grid) * patch + ky, ox = (p % grid) * patch + kx;
    const float* plane = planes + ((size_t)v * 3 + c) * in_w * in_h;
    float x = bilinear_at(plane, in_w, in_h, (float)in_w / size, (float)in_h / size, ox, oy);
    const float mean[3] = {IMAGENET_MEAN}, stdv[3] = {IMAGENET_STD};
    cols[i] = (x - mean[c]) / stdv[c];
}

// LayerNorm of one row held by a warp (`n` values at `x`), written to `out`.
__device__ void warp_layer_norm(const float* x, int n, const float* __restrict__ w,
                                const float* __restrict__ b, float eps, float* out)
{
    int lane = threadIdx.x & 31;
    float s = 0.f;
    for (int c = lane; c < n; c += WARP) s += x[c];
    float mean = warp_sum(s) / n;
    float q = 0.f;
    for (int c = lane; c < n; c += WARP) { float d = x[c] - mean; q += d * d; }
    float rstd = rsqrtf(warp_sum(q) / n + eps);
    for (int c = lane; c < n; c += WARP) out[c] = (x[c] - mean) * rstd * w[c] + b[c];
}

// The embeddings: row 0 of each view = CLS + pos[0]; row t > 0 (the patch GEMM's output) +=
// the conv bias + pos[t]; then LayerNorm 1 of the first layer into `xn`. A warp per row.
extern "C" __global__ void embed_finish(float* __restrict__ x, const float* __restrict__ cls,
                                        const float* __restrict__ pos, const float* __restrict__ bias,
                                        const float* __restrict__ ln_w, const float* __restrict__ ln_b,
                                        float eps, unsigned int rows, unsigned int tokens,
                                        unsigned int hidden, float* __restrict__ xn)
{
    unsigned int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    unsigned int t = row % tokens, lane = threadIdx.x & 31;
    float* r = x + (size_t)row * hidden;
    const float* p = pos + (size_t)t * hidden;
    for (unsigned int c = lane; c < hidden; c += WARP)
        r[c] = t == 0 ? cls[c] + p[c] : (r[c] + bias[c]) + p[c];
    __syncwarp();
    warp_layer_norm(r, hidden, ln_w, ln_b, eps, xn + (size_t)row * hidden);
}

// x += ls ⊙ (y + bias) (HF Dinov2Layer's layer scale and residual), then, when ln_w is not
// null, LayerNorm of the new x into `xn`. A warp per row.
// Rows of x are x_stride floats apart (hidden, or tokens·hidden for the CLS rows alone).
extern "C" __global__ void residual_norm(float* __restrict__ x, const float* __restrict__ y,
                                         const float* __restrict__ bias, const float* __restrict__ ls,
                                         const float* __restrict__ ln_w, const float* __restrict__ ln_b,
                                         float eps, unsigned int rows, unsigned int hidden,
                                         unsigned int x_stride, float* __restrict__ xn)
{
    unsigned int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    unsigned int lane = threadIdx.x & 31;
    float* r = x + (size_t)row * x_stride;
    const float* yr = y + (size_t)row * hidden;
    for (unsigned int c = lane; c < hidden; c += WARP) r[c] = ls[c] * (yr[c] + bias[c]) + r[c];
    if (ln_w == nullptr) return;
    __syncwarp();
    warp_layer_norm(r, hidden, ln_w, ln_b, eps, xn + (size_t)row * hidden);
}

// The fused QKV GEMM's output [rows, 3 * hidden] plus its bias, split into Q, K and V, each
// (view, head, token, head_dim) so one strided batched GEMM covers every (view, head).
extern "C" __global__ void split_heads(const float* __restrict__ qkv, const float* __restrict__ bias,
                                       unsigned int views, unsigned int tokens, unsigned int hidden,
                                       unsigned int heads, float* __restrict__ q, float* __restrict__ k,
                                       float* __restrict__ v)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t per = (size_t)views * tokens * hidden;
    if (i >= 3 * per) return;
    unsigned int col = i % (3 * hidden);
    size_t row = i / (3 * hidden);
    unsigned int which = col / hidden, c = col % hidden, dim = hidden / heads;
    unsigned int h = c / dim, d = c % dim;
    size_t t = row % tokens, view = row / tokens;
    float* out = which == 0 ? q : which == 1 ? k : v;
    out[((view * heads + h) * tokens + t) * dim + d] = qkv[i] + bias[col];
}

// Row softmax in place (`torch.softmax(dim=-1)`: exp(x - max) / sum), one warp per row. Rows
// of up to WARP * SOFTMAX_REGS values (1370 tokens at the validator's 518 px) are read once
// into registers, so the scores make one round trip through memory; longer rows take two
// passes (max and sum together, the sum rescaled as the max grows, then the write).
#define SOFTMAX_REGS 48
extern "C" __global__ void softmax_rows(float* __restrict__ s, unsigned int rows, unsigned int n)
{
    const float NEG_INF = __int_as_float(0xff800000);
    size_t row = (size_t)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    unsigned int lane = threadIdx.x & 31;
    float* r = s + row * n;
    if (n <= WARP * SOFTMAX_REGS) {
        float v[SOFTMAX_REGS];
        float m = NEG_INF;
#pragma unroll
        for (int k = 0; k < SOFTMAX_REGS; ++k) {
            unsigned int j = lane + k * WARP;
            v[k] = j < n ? r[j] : NEG_INF;
            m = fmaxf(m, v[k]);
        }
        for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < SOFTMAX_REGS; ++k) {
            v[k] = lane + k * WARP < n ? expf(v[k] - m) : 0.f;
            sum += v[k];
        }
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
#pragma unroll
        for (int k = 0; k < SOFTMAX_REGS; ++k) {
            unsigned int j = lane + k * WARP;
            if (j < n) r[j] = v[k] / sum;
        }
        return;
    }
    float m = NEG_INF, sum = 0.f;
    for (unsigned int j = lane; j < n; j += WARP) {
        float x = r[j];
        if (x > m) { sum = (m == NEG_INF ? 0.f : sum * expf(m - x)) + 1.f; m = x; }
        else sum += expf(x - m);
    }
    for (int off = 16; off > 0; off >>= 1) {
        float om = __shfl_xor_sync(0xffffffffu, m, off), os = __shfl_xor_sync(0xffffffffu, sum, off);
        float nm = fmaxf(m, om);
        sum = (m == NEG_INF ? 0.f : sum * expf(m - nm)) + (om == NEG_INF ? 0.f : os * expf(om - nm));
        m = nm;
    }
    for (unsigned int j = lane; j < n; j += WARP) r[j] = expf(r[j] - m) / sum;
}

// y = GELU(y + bias), the exact (erf) GELU of `nn.GELU()`.
extern "C" __global__ void bias_gelu(float* __restrict__ y, const float* __restrict__ bias,
                                     unsigned int rows, unsigned int cols)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * cols) return;
    float x = y[i] + bias[i % cols];
    y[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
}

// The quality head on each view's CLS row: final LayerNorm, score_head (hidden -> 1), sigmoid.
// A warp per view.
extern "C" __global__ void quality_head(const float* __restrict__ x, unsigned int views,
                                        unsigned int tokens, unsigned int hidden,
                                        const float* __restrict__ ln_w, const float* __restrict__ ln_b,
                                        float eps, const float* __restrict__ head_w, float head_b,
                                        float* __restrict__ scratch, float* __restrict__ quality)
{
    unsigned int v = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (v >= views) return;
    unsigned int lane = threadIdx.x & 31;
    float* n = scratch + (size_t)v * hidden;
    warp_layer_norm(x + (size_t)v * tokens * hidden, hidden, ln_w, ln_b, eps, n);
    __syncwarp();
    float s = 0.f;
    for (unsigned int c = lane; c < hidden; c += WARP) s += n[c] * head_w[c];
    float logit = warp_sum(s) + head_b;
    if (lane == 0) quality[v] = 1.0f / (1.0f + expf(-logit));
}

// --- LPIPS (torchmetrics 1.5.1, alex, normalize=True) --------------------------------------

// LPIPS's input, NHWC (view, row, column, channel): bicubic to size x size, clipped to [0, 1],
// x -> 2x - 1, then the scaling layer (x - shift) / scale.
extern "C" __global__ void lpips_input(const float* __restrict__ planes, unsigned int in_w,
                                       unsigned int in_h, unsigned int views, unsigned int size,
                                       float* __restrict__ out)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)views * size * size * 3) return;
    unsigned int c = i % 3;
    size_t p = i / 3;
    unsigned int ox = p % size, oy = (p / size) % size, v = p / ((size_t)size * size);
    const float* plane = planes + ((size_t)v * 3 + c) * in_w * in_h;
    float x = bicubic_at(plane, in_w, in_h, (float)in_w / size, (float)in_h / size, ox, oy);
    x = fminf(fmaxf(x, 0.0f), 1.0f);
    const float shift[3] = {LPIPS_SHIFT}, scale[3] = {LPIPS_SCALE};
    out[i] = (2.0f * x - 1.0f - shift[c]) / scale[c];
}

// im2col of an NHWC map for a k x k convolution (stride, zero padding):
// cols[(view * oh * ow + oy * ow + ox)][c * k² + ky * k + kx], the weight's [out, in, k, k] order.
extern "C" __global__ void im2col_nhwc(const float* __restrict__ in, unsigned int views,
                                       unsigned int h, unsigned int w, unsigned int ch, unsigned int k,
                                       unsigned int stride, unsigned int pad, unsigned int oh,
                                       unsigned int ow, float* __restrict__ cols)
{
    unsigned int kk = ch * k * k;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)views * oh * ow * kk) return;
    unsigned int col = i % kk;
    size_t row = i / kk;
    unsigned int ox = row % ow, oy = (row / ow) % oh, v = row / ((size_t)oh * ow);
    unsigned int c = col / (k * k), ky = (col / k) % k, kx = col % k;
    int y = (int)(oy * stride + ky) - (int)pad, x = (int)(ox * stride + kx) - (int)pad;
    float val = 0.0f;
    if (y >= 0 && y < (int)h && x >= 0 && x < (int)w) val = in[(((size_t)v * h + y) * w + x) * ch + c];
    cols[i] = val;
}

// y = ReLU(y + bias) over [rows, cols].
extern "C" __global__ void bias_relu(float* __restrict__ y, const float* __restrict__ bias,
                                     unsigned int rows, unsigned int cols)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * cols) return;
    y[i] = fmaxf(y[i] + bias[i % cols], 0.0f);
}

// 3 x 3, stride 2 max-pool (no padding, floor) of an NHWC map.
extern "C" __global__ void max_pool_nhwc(const float* __restrict__ in, unsigned int views,
                                         unsigned int h, unsigned int w, unsigned int ch,
                                         unsigned int oh, unsigned int ow, float* __restrict__ out)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)views * oh * ow * ch) return;
    unsigned int c = i % ch;
    size_t p = i / ch;
    unsigned int ox = p % ow, oy = (p / ow) % oh, v = p / ((size_t)oh * ow);
    float m = __int_as_float(0xff800000);
    for (unsigned int dy = 0; dy < 3; ++dy)
        for (unsigned int dx = 0; dx < 3; ++dx) {
            float q = in[(((size_t)v * h + oy * 2 + dy) * w + ox * 2 + dx) * ch + c];
            m = (q > m || q != q) ? q : m;  // max_pool propagates NaN
        }
    out[i] = m;
}

#define LPIPS_THREADS 256

// One tap's part of LPIPS for every pair (p, (p + 1) mod views): at each position, each
// view's features divided by sqrt(eps + Σ f²) over channels (torchmetrics 1.5.1
// `_normalize_tensor`), squared difference, the 1 x 1 `lin` without bias; the spatial mean
// added to acc[p]. Grid: (blocks per pair, pairs); a warp per position.
extern "C" __global__ void __launch_bounds__(LPIPS_THREADS)
lpips_tap(const float* __restrict__ feat, unsigned int views, unsigned int positions,
          unsigned int ch, const float* __restrict__ lin, double* __restrict__ acc)
{
    __shared__ float s_part[LPIPS_THREADS / WARP];
    unsigned int pair = blockIdx.y, other = (pair + 1) % views;
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x / WARP;
    float total = 0.f;
    for (unsigned int p = blockIdx.x * (LPIPS_THREADS / WARP) + warp; p < positions;
         p += gridDim.x * (LPIPS_THREADS / WARP)) {
        const float* a = feat + ((size_t)pair * positions + p) * ch;
        const float* b = feat + ((size_t)other * positions + p) * ch;
        float sa = 0.f, sb = 0.f;
        for (unsigned int c = lane; c < ch; c += WARP) { sa += a[c] * a[c]; sb += b[c] * b[c]; }
        float na = sqrtf(LPIPS_NORM_EPS + warp_sum(sa)), nb = sqrtf(LPIPS_NORM_EPS + warp_sum(sb));
        float d = 0.f;
        for (unsigned int c = lane; c < ch; c += WARP) {
            float e = a[c] / na - b[c] / nb;
            d += lin[c] * (e * e);
        }
        total += warp_sum(d);
    }
    if (lane == 0) s_part[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int k = 0; k < LPIPS_THREADS / WARP; ++k) s += s_part[k];
        atomicAdd(&acc[pair], s / positions);
    }
}

// The one array read back: quality per view, SSIM per pair (its sum / 3 / pixels), LPIPS per pair.
extern "C" __global__ void pack_scores(const float* __restrict__ quality,
                                       const double* __restrict__ ssim_sum,
                                       const double* __restrict__ lpips, unsigned int views,
                                       double ssim_count, double* __restrict__ out)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < views) {
        out[i] = (double)quality[i];
        out[views + i] = ssim_sum[i] / ssim_count;
        out[2 * views + i] = lpips[i];
    }
}
