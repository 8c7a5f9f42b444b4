// The alignment towers' own steps on the GPU (open_clip convnext_large_d, image and text
// towers; LLM2CLIP's CLIP ViT-L/14-336 vision tower), beside cuBLAS for every matrix
// product and scorer.cu's kernels (split_heads, softmax_rows, bias_gelu, residual_norm,
// embed_finish, im2col_nhwc, planes_from_*). This file is compiled after scorer.cu in one
// program, so it uses scorer.cu's helpers (warp_sum, warp_layer_norm, bicubic_at) rather
// than copies. Each step is the CPU reference's operation (scorer/convnext_clip/forward.rs,
// scorer/llm2clip/vit.rs) in its order where it matters.

// The towers' input as the im2col of a stride = kernel patch convolution: each view
// resized to size x size (bicubic, align_corners=False, as the service's F.interpolate),
// normalised (x - mean[c]) / std[c] with the service's mean x 3 and std x 3 (computed in f32
// on the host), cut into patch x patch patches:
// cols[(view * grid² + patch)][c * patch² + ky * patch + kx] (the weight's [out, in, k, k]).
extern "C" __global__ void bicubic_patches(const float* __restrict__ planes, unsigned int in_w,
                                           unsigned int in_h, unsigned int views,
                                           unsigned int size, unsigned int patch, float m0,
                                           float m1, float m2, float s0, float s1, float s2,
                                           float* __restrict__ cols)
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
    float x = bicubic_at(plane, in_w, in_h, (float)in_w / size, (float)in_h / size, ox, oy);
    float mean = c == 0 ? m0 : c == 1 ? m1 : m2;
    float stdv = c == 0 ? s0 : c == 1 ? s1 : s2;
    cols[i] = (x - mean) / stdv;
}

// Row LayerNorm, a warp per row: row r of x (x_stride floats apart) plus `bias` when it is
// not null (added in place first), normalised over `n` values into row r of out
// (out_stride floats apart; out may be x).
extern "C" __global__ void layer_norm_rows(float* x, const float* __restrict__ bias,
                                           const float* __restrict__ ln_w,
                                           const float* __restrict__ ln_b, float eps,
                                           unsigned int rows, unsigned int n,
                                           unsigned int x_stride, float* out,
                                           unsigned int out_stride)
{
    unsigned int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    unsigned int lane = threadIdx.x & 31;
    float* r = x + (size_t)row * x_stride;
    if (bias != nullptr) {
        for (unsigned int c = lane; c < n; c += WARP) r[c] += bias[c];
        __syncwarp();
    }
    warp_layer_norm(r, n, ln_w, ln_b, eps, out + (size_t)row * out_stride);
}

// y += bias over [rows, cols].
extern "C" __global__ void bias_add(float* __restrict__ y, const float* __restrict__ bias,
                                    unsigned int rows, unsigned int cols)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * cols) return;
    y[i] += bias[i % cols];
}

// y = quick_gelu(y + bias): x * (1 / (1 + exp(-(1.702 x)))) (transformers QuickGELUActivation).
extern "C" __global__ void bias_quick_gelu(float* __restrict__ y, const float* __restrict__ bias,
                                           unsigned int rows, unsigned int cols)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * cols) return;
    float x = y[i] + bias[i % cols];
    y[i] = x * (1.0f / (1.0f + expf(-(1.702f * x))));
}

// timm ConvNeXtBlock's depthwise k x k convolution (zero padding k / 2, bias) of an NHWC map,
// then its LayerNorm over channels, a warp per pixel: each lane takes channels lane,
// lane + 32, ...; taps in (ky, kx) order after the bias, as the CPU reference sums them. The
// weight is transposed at upload to [k * k][channels] so a warp's reads are contiguous.
extern "C" __global__ void dwconv_norm(const float* __restrict__ x, const float* __restrict__ w_t,
                                       const float* __restrict__ bias,
                                       const float* __restrict__ ln_w,
                                       const float* __restrict__ ln_b, float eps,
                                       unsigned int views, unsigned int h, unsigned int w,
                                       unsigned int ch, unsigned int k, float* __restrict__ out)
{
    size_t pix = (size_t)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (pix >= (size_t)views * h * w) return;
    unsigned int lane = threadIdx.x & 31;
    unsigned int ox = pix % w, oy = (pix / w) % h;
    size_t v = pix / ((size_t)h * w);
    int pad = (int)k / 2;
    float* o = out + pix * ch;
    for (unsigned int c = lane; c < ch; c += WARP) {
        float acc = bias[c];
        for (unsigned int ky = 0; ky < k; ++ky) {
            int iy = (int)(oy + ky) - pad;
            if (iy < 0 || iy >= (int)h) continue;
            for (unsigned int kx = 0; kx < k; ++kx) {
                int ix = (int)(ox + kx) - pad;
                if (ix < 0 || ix >= (int)w) continue;
                acc += w_t[(size_t)(ky * k + kx) * ch + c] *
                       x[((v * h + (size_t)iy) * w + (size_t)ix) * ch + c];
            }
        }
        o[c] = acc;
    }
    __syncwarp();
    warp_layer_norm(o, ch, ln_w, ln_b, eps, o);
}

// adaptive_avg_pool2d to 1 x 1 of an NHWC map: out[view][c] = the mean over its pixels,
// summed in double as the CPU reference sums.
extern "C" __global__ void mean_pool_nhwc(const float* __restrict__ x, unsigned int views,
                                          unsigned int pixels, unsigned int ch,
                                          float* __restrict__ out)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)views * ch) return;
    unsigned int c = i % ch;
    size_t v = i / ch;
    double s = 0.0;
    for (unsigned int p = 0; p < pixels; ++p) s += (double)x[(v * pixels + p) * ch + c];
    out[i] = (float)(s / (double)(pixels > 0 ? pixels : 1));
}

// The text tower's input: x[t] = token_embedding[ids[t]] + positional_embedding[t].
extern "C" __global__ void text_embed(const unsigned int* __restrict__ ids,
                                      const float* __restrict__ tok, const float* __restrict__ pos,
                                      unsigned int rows, unsigned int width,
                                      float* __restrict__ x)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * width) return;
    unsigned int c = i % width;
    size_t t = i / width;
    x[i] = tok[(size_t)ids[t] * width + c] + pos[i];
}

// open_clip's causal mask on `batches` score matrices of n x n: -inf above the diagonal
// (softmax_rows then gives those keys weight 0).
extern "C" __global__ void causal_mask(float* __restrict__ s, unsigned int batches,
                                       unsigned int n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)batches * n * n) return;
    unsigned int j = i % n, r = (i / n) % n;
    if (j > r) s[i] = __int_as_float(0xff800000);
}

// x / ||x|| per row, a warp per row, the norm summed in double: rows of n floats, x_stride
// apart, into compact rows of out.
extern "C" __global__ void l2_normalise_rows(const float* __restrict__ x, unsigned int rows,
                                             unsigned int n, unsigned int x_stride,
                                             float* __restrict__ out)
{
    unsigned int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    unsigned int lane = threadIdx.x & 31;
    const float* r = x + (size_t)row * x_stride;
    double s = 0.0;
    for (unsigned int c = lane; c < n; c += WARP) s += (double)r[c] * (double)r[c];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    float norm = (float)sqrt(s);
    float* o = out + (size_t)row * n;
    for (unsigned int c = lane; c < n; c += WARP) o[c] = r[c] / norm;
}

// FP32 -> FP16, rounded to nearest even (as __float2half_rn; PTX's cvt, so no header): the
// operands of the FP16 matrix products (weights once, activations before each product),
// the halves' bits as unsigned shorts.
extern "C" __global__ void f32_to_f16(const float* __restrict__ x, unsigned long long n,
                                      unsigned short* __restrict__ y)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x[i]));
    y[i] = h;
}
