// Binning and ordering: an exclusive scan of per-(view, gaussian) tile counts, one key per
// (view, tile, gaussian) with the depth's bits in the low 32, a stable LSD radix sort of
// those keys (so equal depths keep gaussian order, as gsplat's radix sort does), and the
// start/end of every (view, tile) in the sorted list. CPU reference: cpu/raster.rs.

#define SCAN_THREADS 256
#define SCAN_ITEMS 4
#define SCAN_TILE (SCAN_THREADS * SCAN_ITEMS)

// Exclusive scan of one tile of SCAN_TILE values per block; the tile total goes to sums.
extern "C" __global__ void scan_tiles(const unsigned int* __restrict__ in, unsigned int* __restrict__ out,
                                      unsigned int* __restrict__ sums, unsigned int n)
{
    __shared__ unsigned int s_warp[SCAN_THREADS / 32];
    unsigned int base = blockIdx.x * SCAN_TILE + threadIdx.x * SCAN_ITEMS;
    unsigned int v[SCAN_ITEMS];
    unsigned int local = 0;
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        v[k] = (base + k < n) ? in[base + k] : 0u;
        local += v[k];
    }
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned int incl = local;
    for (int off = 1; off < 32; off <<= 1) {
        unsigned int t = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += t;
    }
    if (lane == 31) s_warp[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        unsigned int w = (lane < SCAN_THREADS / 32) ? s_warp[lane] : 0u;
        unsigned int wi = w;
        for (int off = 1; off < 32; off <<= 1) {
            unsigned int t = __shfl_up_sync(0xffffffffu, wi, off);
            if (lane >= off) wi += t;
        }
        if (lane < SCAN_THREADS / 32) s_warp[lane] = wi - w;
    }
    __syncthreads();
    unsigned int running = s_warp[warp] + incl - local;
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        if (base + k < n) out[base + k] = running;
        running += v[k];
    }
    if (threadIdx.x == SCAN_THREADS - 1) sums[blockIdx.x] = running;
}

// Adds each tile's scanned offset to its values.
extern "C" __global__ void scan_add(unsigned int* __restrict__ data, const unsigned int* __restrict__ offsets,
                                    unsigned int n)
{
    unsigned int base = blockIdx.x * SCAN_TILE + threadIdx.x * SCAN_ITEMS;
    unsigned int add = offsets[blockIdx.x];
    for (int k = 0; k < SCAN_ITEMS; ++k)
        if (base + k < n) data[base + k] += add;
}

// One key per touched tile: (view << (32 + tile_bits)) | (tile << 32) | depth bits; value =
// view * n + gaussian. Tiles are walked row by row, as gsplat walks them.
extern "C" __global__ void emit_keys(const unsigned int* __restrict__ offsets, const unsigned int* __restrict__ counts,
                                     const uint2* __restrict__ rects, const float* __restrict__ depths,
                                     unsigned int n, unsigned int views, unsigned int tiles_x, unsigned int tile_bits,
                                     unsigned long long* __restrict__ keys, unsigned int* __restrict__ values)
{
    unsigned int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n * views || counts[o] == 0) return;
    unsigned long long v = o / n;
    uint2 r = rects[o];
    unsigned int x0 = r.x & 0xffffu, y0 = r.x >> 16, x1 = r.y & 0xffffu, y1 = r.y >> 16;
    unsigned long long depth_bits = (unsigned long long)__float_as_uint(depths[o]);
    unsigned long long head = v << (32 + tile_bits);
    unsigned int k = offsets[o];
    for (unsigned int ty = y0; ty < y1; ++ty)
        for (unsigned int tx = x0; tx < x1; ++tx) {
            unsigned long long tile = ty * tiles_x + tx;
            keys[k] = head | (tile << 32) | depth_bits;
            values[k] = o;
            ++k;
        }
}

#define RADIX_THREADS 256
#define RADIX_ITEMS 16
#define RADIX_CHUNK (RADIX_THREADS * RADIX_ITEMS)

// Digit counts per block, stored digit-major: hist[digit * blocks + block].
extern "C" __global__ void radix_histogram(const unsigned long long* __restrict__ keys, unsigned int m,
                                           unsigned int shift, unsigned int* __restrict__ hist)
{
    __shared__ unsigned int s_hist[256];
    s_hist[threadIdx.x] = 0;
    __syncthreads();
    unsigned int base = blockIdx.x * RADIX_CHUNK;
    for (unsigned int k = threadIdx.x; k < RADIX_CHUNK; k += RADIX_THREADS) {
        unsigned int idx = base + k;
        if (idx < m) atomicAdd(&s_hist[(unsigned int)(keys[idx] >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    hist[threadIdx.x * gridDim.x + blockIdx.x] = s_hist[threadIdx.x];
}

// Stable scatter by one 8-bit digit. Each block walks its chunk in order, 256 keys at a time;
// within a step a key's rank counts equal digits of lower threads (warp match, then warps).
extern "C" __global__ void radix_scatter(const unsigned long long* __restrict__ keys_in,
                                         const unsigned int* __restrict__ values_in, unsigned int m,
                                         unsigned int shift, const unsigned int* __restrict__ offsets,
                                         unsigned long long* __restrict__ keys_out,
                                         unsigned int* __restrict__ values_out)
{
    __shared__ unsigned int s_base[256];
    __shared__ unsigned int s_warp[RADIX_THREADS / 32][256];
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    s_base[threadIdx.x] = offsets[threadIdx.x * gridDim.x + blockIdx.x];
    unsigned int lt_mask = (1u << lane) - 1u;
    unsigned int base = blockIdx.x * RADIX_CHUNK;
    for (unsigned int step = 0; step < RADIX_ITEMS; ++step) {
        unsigned int idx = base + step * RADIX_THREADS + threadIdx.x;
        bool valid = idx < m;
        unsigned long long key = valid ? keys_in[idx] : 0ull;
        // Invalid lanes take digit 256, which no valid lane shares.
        unsigned int digit = valid ? (unsigned int)(key >> shift) & 0xffu : 256u;
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) s_warp[w][threadIdx.x] = 0;
        __syncthreads();
        unsigned int peers = __match_any_sync(0xffffffffu, digit);
        unsigned int rank = __popc(peers & lt_mask);
        if (valid && rank == 0) s_warp[warp][digit] = __popc(peers);
        __syncthreads();
        // Thread d turns the per-warp counts of digit d into exclusive offsets.
        unsigned int total = 0;
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) {
            unsigned int c = s_warp[w][threadIdx.x];
            s_warp[w][threadIdx.x] = total;
            total += c;
        }
        __syncthreads();
        if (valid) {
            unsigned int pos = s_base[digit] + s_warp[warp][digit] + rank;
            keys_out[pos] = key;
            values_out[pos] = values_in[idx];
        }
        __syncthreads();
        s_base[threadIdx.x] += total;
        __syncthreads();
    }
}

// Start and end of every (view, tile) run in the sorted keys; ranges must be zeroed first.
extern "C" __global__ void tile_ranges(const unsigned long long* __restrict__ keys, unsigned int m,
                                       uint2* __restrict__ ranges)
{
    unsigned int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= m) return;
    unsigned int id = (unsigned int)(keys[k] >> 32);
    if (k == 0 || (unsigned int)(keys[k - 1] >> 32) != id) ranges[id].x = k;
    if (k == m - 1 || (unsigned int)(keys[k + 1] >> 32) != id) ranges[id].y = k + 1;
}
