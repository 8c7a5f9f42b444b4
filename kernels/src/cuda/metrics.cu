// Metrics on the rendered views, accumulated per view in doubles: silhouette coverage and
// bounding box, mean colour and saturation inside the silhouette, the variance of the
// 4-neighbour Laplacian of luminance inside it, and SSIM between adjacent views
// (torchmetrics: 11x11 Gaussian window, sigma 1.5, data range 1, windows wholly inside the
// image). CPU reference: cpu/metrics.rs. The same SSIM code also gives the validator's SSIM
// (reflect padding, every pixel, wrap-around pair) to the scorer: `ssim_validator`.

// SSIM_R, SSIM_COLS and SSIM_ROWS (output columns and rows per block), SSIM_THREADS (one
// per output column and channel), VIEW_METRICS_ROWS (image rows per view-metrics block) and
// the accumulators' and summary's layout come from the prelude (gpu/layout.rs).
#define SSIM_IN_COLS (SSIM_COLS + 2 * SSIM_R)
#define SSIM_CHUNKS ((SSIM_ROWS + 2 * SSIM_R + SSIM_WINDOW - 1) / SSIM_WINDOW)
#define VIEW_METRICS_THREADS SSIM_THREADS  // both run in one launch
static_assert(SSIM_THREADS == 3 * SSIM_COLS, "one SSIM thread per output column and channel");
static_assert(VIEW_ACC_WORDS == 8 && VIEW_BBOX_WORDS == 4, "view_metrics' accumulators and box");

// acc per view (VIEW_ACC_WORDS doubles): count, r, g, b, saturation, laplacian n, sum, sum of
// squares. bbox per view (VIEW_BBOX_WORDS ints): min x, min y, max x, max y (pre-set to
// INT_MAX, INT_MAX, -1, -1).
// A block walks VIEW_METRICS_ROWS (8) rows of one view, each thread about 20 pixels, so the
// reductions and the atomics are paid once per 4 k pixels instead of once per pixel.
__device__ void view_metrics(const float4* __restrict__ img, unsigned int width, unsigned int height,
                             double* __restrict__ acc, int* __restrict__ bbox, unsigned int row_block,
                             unsigned int view)
{
    __shared__ double s_acc[VIEW_ACC_WORDS][VIEW_METRICS_THREADS / 32];
    __shared__ int s_box[VIEW_BBOX_WORDS][VIEW_METRICS_THREADS / 32];
    unsigned int y0 = row_block * VIEW_METRICS_ROWS;
    unsigned int rows = min((unsigned int)VIEW_METRICS_ROWS, height - y0);
    const float4* v = img + (size_t)view * width * height;
    // Per-thread and warp sums in float (a few hundred pixels lose nothing that matters);
    // block sums and the per-view totals in double.
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int box[4] = {0x7fffffff, 0x7fffffff, -1, -1};
    for (unsigned int k = threadIdx.x; k < rows * width; k += VIEW_METRICS_THREADS) {
        unsigned int y = y0 + k / width, x = k % width;
        float4 p = v[y * width + x];
        if (!(p.w >= SILHOUETTE_ALPHA)) continue;
        a[0] += 1.0f; a[1] += p.x; a[2] += p.y; a[3] += p.z;
        float mx = fmaxf(p.x, fmaxf(p.y, p.z)), mn = fminf(p.x, fminf(p.y, p.z));
        a[4] += mx > 0.f ? (mx - mn) / mx : 0.0f;
        box[0] = min(box[0], (int)x); box[1] = min(box[1], (int)y);
        box[2] = max(box[2], (int)x); box[3] = max(box[3], (int)y);
        if (x > 0 && y > 0 && x + 1 < width && y + 1 < height) {
            float4 u = v[(y - 1) * width + x], d = v[(y + 1) * width + x];
            float4 l = v[y * width + x - 1], r = v[y * width + x + 1];
            #define LUM(q) (0.299f * (q).x + 0.587f * (q).y + 0.114f * (q).z)
            float lap = LUM(u) + LUM(d) + LUM(l) + LUM(r) - 4.0f * LUM(p);
            #undef LUM
            a[5] += 1.0f; a[6] += lap; a[7] += lap * lap;
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        for (int k = 0; k < 8; ++k) a[k] += __shfl_down_sync(0xffffffffu, a[k], off);
        box[0] = min(box[0], __shfl_down_sync(0xffffffffu, box[0], off));
        box[1] = min(box[1], __shfl_down_sync(0xffffffffu, box[1], off));
        box[2] = max(box[2], __shfl_down_sync(0xffffffffu, box[2], off));
        box[3] = max(box[3], __shfl_down_sync(0xffffffffu, box[3], off));
    }
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        for (int k = 0; k < 8; ++k) s_acc[k][warp] = (double)a[k];
        for (int k = 0; k < 4; ++k) s_box[k][warp] = box[k];
    }
    __syncthreads();
    // Eight threads sum the eight accumulators, four more the box.
    unsigned int t = threadIdx.x;
    if (t < 8) {
        double s = 0;
        for (unsigned int w = 0; w < VIEW_METRICS_THREADS / 32; ++w) s += s_acc[t][w];
        if (s != 0.0) atomicAdd(&acc[view * VIEW_ACC_WORDS + t], s);
    } else if (t < 12) {
        unsigned int k = t - 8;
        int b = s_box[k][0];
        for (unsigned int w = 1; w < VIEW_METRICS_THREADS / 32; ++w) b = k < 2 ? min(b, s_box[k][w]) : max(b, s_box[k][w]);
        if (k < 2 ? b != 0x7fffffff : b >= 0) {
            if (k < 2) atomicMin(&bbox[view * VIEW_BBOX_WORDS + k], b); else atomicMax(&bbox[view * VIEW_BBOX_WORDS + k], b);
        }
    }
}

__constant__ float c_ssim_w[SSIM_WINDOW] = {SSIM_WEIGHTS};

// Where SSIM reads its pixels, in "window coordinates": the output position (ox, oy)
// averages the window [ox, ox + 2R] x [oy, oy + 2R] of them, so `width` x `height` window
// coordinates give (width - 2R) x (height - 2R) outputs.
//
// RenderPixels: the renderer's RGBA float views as they are, windows wholly inside the image
// (the renderer's own adjacent-view SSIM; CPU reference cpu/metrics.rs).
struct RenderPixels {
    const float4* img;
    int width, height;  // of the image and of the window coordinates
    __device__ __forceinline__ void load(int view, int gy, int gx, float rgb[3]) const {
        float4 p = img[((size_t)view * height + min(gy, height - 1)) * width + min(gx, width - 1)];
        rgb[0] = p.x; rgb[1] = p.y; rgb[2] = p.z;
    }
};

// ValidatorPixels: planar float views (view, channel, row, column) padded by R on every side
// by reflection (torch `F.pad(mode="reflect")`), so every pixel has an output, as
// torchmetrics 1.5.1 computes it (the scorer's SSIM; CPU reference scorer/cpu).
struct ValidatorPixels {
    const float* planes;
    int img_w, img_h;   // of the image; window coordinates are (img_w + 2R) x (img_h + 2R)
    static __device__ __forceinline__ int reflect(int i, int n) {
        i = i < 0 ? -i : i;
        return i >= n ? 2 * (n - 1) - i : i;
    }
    __device__ __forceinline__ void load(int view, int gy, int gx, float rgb[3]) const {
        int y = reflect(min(gy, img_h + 2 * SSIM_R - 1) - SSIM_R, img_h);
        int x = reflect(min(gx, img_w + 2 * SSIM_R - 1) - SSIM_R, img_w);
        size_t plane = (size_t)img_w * img_h;
        const float* p = planes + (size_t)view * 3 * plane + (size_t)y * img_w + x;
        rgb[0] = p[0]; rgb[1] = p[plane]; rgb[2] = p[2 * plane];
    }
};

// SSIM of view `va` against view `vb` over the `width` x `height` window coordinates of
// `Pixels`. A block covers 64 output columns by 128 output rows; each thread owns one
// (column, channel) and walks down the rows. The horizontal window of each input row is
// summed from shared memory into a ring of the last 11 rows' five moments, kept in registers
// (the row loop is unrolled by the window, so every ring index is a constant); the vertical
// window is then summed from the ring. Input rows are staged 11 at a time, double-buffered,
// as planar floats (no alpha). The sums are taken in the CPU reference's order; the block's
// total goes to ssim_sum[pair]. CLAMP_VARIANCE: torchmetrics clamps both variances at 0.
template <class Pixels, bool CLAMP_VARIANCE>
__device__ void ssim_pair(const Pixels& px, int width, int height, double* __restrict__ ssim_sum,
                          unsigned int col_block, unsigned int row_block, unsigned int pair,
                          int va, int vb)
{
    __shared__ float s_rows[2][SSIM_WINDOW][6][SSIM_IN_COLS];  // a.r a.g a.b b.r b.g b.b
    __shared__ double s_red[SSIM_THREADS / 32];
    const int x_in = col_block * SSIM_COLS, y_in = row_block * SSIM_ROWS;  // first input pixel
    const int tid = threadIdx.x, c = tid / SSIM_COLS, col = tid % SSIM_COLS;
    const bool col_valid = x_in + col < width - 2 * SSIM_R;

    auto stage = [&](int chunk, int buf) {
        for (int k = tid; k < SSIM_WINDOW * SSIM_IN_COLS; k += SSIM_THREADS) {
            int ly = k / SSIM_IN_COLS, lx = k % SSIM_IN_COLS;
            int gx = x_in + lx, gy = y_in + chunk * SSIM_WINDOW + ly;
            float a[3], b[3];
            px.load(va, gy, gx, a);
            px.load(vb, gy, gx, b);
            s_rows[buf][ly][0][lx] = a[0]; s_rows[buf][ly][1][lx] = a[1]; s_rows[buf][ly][2][lx] = a[2];
            s_rows[buf][ly][3][lx] = b[0]; s_rows[buf][ly][4][lx] = b[1]; s_rows[buf][ly][5][lx] = b[2];
        }
    };

    float ring[5][SSIM_WINDOW];
    float sum = 0.f;  // at most 128 values per thread; the block's total is summed in double
    stage(0, 0);
    __syncthreads();
    for (int chunk = 0; chunk < SSIM_CHUNKS; ++chunk) {
        int buf = chunk & 1;
        // The other buffer was last read before the previous iteration's barrier.
        if (chunk + 1 < SSIM_CHUNKS) stage(chunk + 1, buf ^ 1);
        #pragma unroll
        for (int p = 0; p < SSIM_WINDOW; ++p) {
            const float* ra = &s_rows[buf][p][c][col];
            const float* rb = &s_rows[buf][p][3 + c][col];
            float m1 = 0.f, m2 = 0.f, s11 = 0.f, s22 = 0.f, s12 = 0.f;
            #pragma unroll
            for (int t = 0; t < SSIM_WINDOW; ++t) {
                float u = ra[t], v = rb[t], wu = c_ssim_w[t] * u, wv = c_ssim_w[t] * v;
                m1 += wu; m2 += wv; s11 += wu * u; s22 += wv * v; s12 += wu * v;
            }
            ring[0][p] = m1; ring[1][p] = m2; ring[2][p] = s11; ring[3][p] = s22; ring[4][p] = s12;
            // Input row `row` completes the window of the output row 2R above it.
            int row = chunk * SSIM_WINDOW + p, out_row = row - 2 * SSIM_R;
            if (out_row >= 0 && out_row < SSIM_ROWS && y_in + out_row < height - 2 * SSIM_R && col_valid) {
                float q[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
                #pragma unroll
                for (int t = 0; t < SSIM_WINDOW; ++t) {
                    #pragma unroll
                    for (int m = 0; m < 5; ++m) q[m] += c_ssim_w[t] * ring[m][(p + 1 + t) % SSIM_WINDOW];
                }
                float mu1 = q[0], mu2 = q[1];
                float sx = q[2] - mu1 * mu1, sy = q[3] - mu2 * mu2, sxy = q[4] - mu1 * mu2;
                if (CLAMP_VARIANCE) { sx = fmaxf(sx, 0.f); sy = fmaxf(sy, 0.f); }
                // The denominator lies between about C1 * C2 and 4, where the fast divide is
                // within 2 ulp.
                sum += __fdividef((2.f * mu1 * mu2 + SSIM_C1) * (2.f * sxy + SSIM_C2),
                                  (mu1 * mu1 + mu2 * mu2 + SSIM_C1) * (sx + sy + SSIM_C2));
            }
        }
        __syncthreads();
    }
    double total = (double)sum;
    for (int off = 16; off > 0; off >>= 1) total += __shfl_down_sync(0xffffffffu, total, off);
    if ((tid & 31) == 0) s_red[tid >> 5] = total;
    __syncthreads();
    if (tid == 0) {
        double s = 0;
        for (int k = 0; k < SSIM_THREADS / 32; ++k) s += s_red[k];
        atomicAdd(&ssim_sum[pair], s);
    }
}

// Both metrics in one launch: the SSIM blocks first (`ssim_cols` x `ssim_rows` blocks per
// adjacent pair, `pairs` pairs), then the view-metrics blocks (`view_rows` per view). SSIM is
// bound on arithmetic and the view metrics on memory: launched together, the view metrics'
// blocks run in the room the SSIM blocks leave instead of after them.
extern "C" __global__ void __launch_bounds__(SSIM_THREADS, 4)
measure_views(const float4* __restrict__ img, unsigned int width, unsigned int height,
              unsigned int ssim_cols, unsigned int ssim_rows, unsigned int pairs, unsigned int view_rows,
              double* __restrict__ ssim_sum, double* __restrict__ acc, int* __restrict__ bbox)
{
    unsigned int b = blockIdx.x, per_pair = ssim_cols * ssim_rows;
    if (b < per_pair * pairs) {
        unsigned int in_pair = b % per_pair;
        unsigned int pair = b / per_pair;
        RenderPixels px{img, (int)width, (int)height};
        ssim_pair<RenderPixels, false>(px, (int)width, (int)height, ssim_sum, in_pair % ssim_cols,
                                       in_pair / ssim_cols, pair, (int)pair, (int)pair + 1);
    } else {
        b -= per_pair * pairs;
        view_metrics(img, width, height, acc, bbox, b % view_rows, b / view_rows);
    }
}

// The validator's SSIM (torchmetrics 1.5.1 `StructuralSimilarityIndexMeasure(data_range=1)`)
// of views (p, (p + 1) mod views) for every p, wrap-around included, on planar float views
// (the scorer's 8-bit/255 images): reflect-padded, so `ssim_cols` x `ssim_rows` blocks per
// pair cover width x height outputs. ssim_sum[p] gets the sum over 3 x height x width.
extern "C" __global__ void __launch_bounds__(SSIM_THREADS, 4)
ssim_validator(const float* __restrict__ planes, unsigned int width, unsigned int height,
               unsigned int views, unsigned int ssim_cols, unsigned int ssim_rows,
               double* __restrict__ ssim_sum)
{
    unsigned int per_pair = ssim_cols * ssim_rows, pair = blockIdx.x / per_pair;
    unsigned int in_pair = blockIdx.x % per_pair;
    ValidatorPixels px{planes, (int)width, (int)height};
    ssim_pair<ValidatorPixels, true>(px, (int)width + 2 * SSIM_R, (int)height + 2 * SSIM_R, ssim_sum,
                                     in_pair % ssim_cols, in_pair / ssim_cols, pair, (int)pair,
                                     (int)((pair + 1) % views));
}

// Resets the accumulators before a render's metrics, on the device (no host copy): acc to 0,
// bbox to (INT_MAX, INT_MAX, -1, -1), ssim_sum to 0.
extern "C" __global__ void reset_metrics(double* __restrict__ acc, int* __restrict__ bbox,
                                         double* __restrict__ ssim_sum, unsigned int views)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < views * VIEW_ACC_WORDS) acc[i] = 0.0;
    if (i < views * VIEW_BBOX_WORDS) bbox[i] = (i % VIEW_BBOX_WORDS < 2) ? 0x7fffffff : -1;
    if (i < views) ssim_sum[i] = 0.0;
}

// Packs everything the host needs into one array, so one copy brings it back (gpu/layout.rs
// `summary` owns the layout): [acc: views * VIEW_ACC_WORDS][bbox: views * VIEW_BBOX_WORDS]
// [ssim_sum: views], then from views * SUMMARY_PER_VIEW: the floaters at SUMMARY_FLOATERS,
// the stats at SUMMARY_STATS, the bounds at SUMMARY_BOUNDS, then up to SUMMARY_EXTRA the
// visible pairs and the intersections' low and high words (`counts`: STATE_VISIBLE onwards).
extern "C" __global__ void pack_metrics(const double* __restrict__ acc, const int* __restrict__ bbox,
                                        const double* __restrict__ ssim_sum,
                                        const unsigned int* __restrict__ floaters,
                                        const double* __restrict__ stats,
                                        const unsigned int* __restrict__ bounds,
                                        const unsigned int* __restrict__ counts, unsigned int views,
                                        double* __restrict__ out)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int boxes = views * VIEW_ACC_WORDS, sums = boxes + views * VIEW_BBOX_WORDS;
    const unsigned int extra = views * SUMMARY_PER_VIEW;
    const unsigned int stats_at = extra + SUMMARY_STATS, bounds_at = extra + SUMMARY_BOUNDS;
    const unsigned int counts_at = bounds_at + MODEL_BOUNDS_WORDS;
    if (i < boxes) out[i] = acc[i];
    else if (i < sums) out[i] = (double)bbox[i - boxes];
    else if (i < extra) out[i] = ssim_sum[i - sums];
    else if (i == extra + SUMMARY_FLOATERS) out[i] = (double)floaters[0];
    else if (i < bounds_at) out[i] = stats[i - stats_at];
    else if (i < counts_at) out[i] = (double)bounds[i - bounds_at];
    else if (i < extra + SUMMARY_EXTRA) out[i] = (double)counts[i - counts_at];
}
