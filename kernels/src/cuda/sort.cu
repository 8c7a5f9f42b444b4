// Binning and ordering, in two stable LSD radix sorts: the visible (view, gaussian) pairs by
// (view, depth), then one key per touched tile, emitted in that order, by (view, tile). Every
// tile's list ends up in depth order with ties by gaussian index, the order gsplat's single
// (view, tile, depth) sort gives, while the long intersection list is sorted on 15 bits
// instead of 47. Then the start/end of every (view, tile). CPU reference: cpu/raster.rs.

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

// Compacts the visible (view, gaussian) pairs into depth keys, (view << 32) | depth bits, with
// value view * n + gaussian, in index order (positions from a scan of the visibility flags).
extern "C" __global__ void depth_keys(const unsigned int* __restrict__ counts, const unsigned int* __restrict__ positions,
                                      const float* __restrict__ depths, unsigned int n, unsigned int views,
                                      unsigned long long* __restrict__ keys, unsigned int* __restrict__ values)
{
    unsigned int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n * views || counts[o] == 0) return;
    unsigned int k = positions[o];
    keys[k] = ((unsigned long long)(o / n) << 32) | (unsigned long long)__float_as_uint(depths[o]);
    values[k] = o;
}

// The same keys in 32 bits when they fit: a visible depth lies in [near, far] with near > 0,
// where float bits order like the floats, so (view << depth_bits) | (bits - near_bits) sorts
// exactly as the 64-bit key does (the validator's rig: 27 depth bits + 4 view bits).
extern "C" __global__ void depth_keys_u32(const unsigned int* __restrict__ counts, const unsigned int* __restrict__ positions,
                                          const float* __restrict__ depths, unsigned int n, unsigned int views,
                                          unsigned int near_bits, unsigned int depth_bits,
                                          unsigned int* __restrict__ keys, unsigned int* __restrict__ values)
{
    unsigned int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n * views || counts[o] == 0) return;
    unsigned int k = positions[o];
    keys[k] = ((o / n) << depth_bits) | (__float_as_uint(depths[o]) - near_bits);
    values[k] = o;
}

// 1 where a (view, gaussian) pair touches any tile.
extern "C" __global__ void visible_flags(const unsigned int* __restrict__ counts, unsigned int vn,
                                         unsigned int* __restrict__ flags)
{
    unsigned int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o < vn) flags[o] = counts[o] > 0 ? 1u : 0u;
}

// Tile counts in depth order, to scan into emission offsets.
extern "C" __global__ void gather_counts(const unsigned int* __restrict__ sorted_values,
                                         const unsigned int* __restrict__ counts, unsigned int k,
                                         unsigned int* __restrict__ out)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < k) out[i] = counts[sorted_values[i]];
}

// Walks the depth-sorted pairs and writes one (view << tile_bits | tile) key per touched tile,
// row by row as gsplat walks them; a stable sort on these keys then leaves every tile's
// gaussians in depth order (ties by index). Load-balanced so the writes are coalesced: a block
// takes EMIT_PAIRS consecutive pairs into shared memory, then its threads stride over the
// block's whole output range together, each finding its pair by binary search over the
// pairs' offsets (a pair touching hundreds of tiles no longer leaves one thread writing them
// one after another while its warp waits).
#define EMIT_PAIRS 256

extern "C" __global__ void emit_tile_keys(const unsigned int* __restrict__ sorted_values, unsigned int k_total,
                                          const unsigned int* __restrict__ offsets, const uint2* __restrict__ rects,
                                          unsigned int n, unsigned int tiles_x, unsigned int tile_bits,
                                          unsigned int m_total,
                                          unsigned int* __restrict__ keys, unsigned int* __restrict__ values)
{
    __shared__ unsigned int s_off[EMIT_PAIRS];
    __shared__ unsigned int s_o[EMIT_PAIRS];
    __shared__ unsigned int s_head[EMIT_PAIRS];
    __shared__ uint2 s_rect[EMIT_PAIRS];
    __shared__ unsigned int s_end;
    unsigned int first = blockIdx.x * EMIT_PAIRS;
    unsigned int pairs = min((unsigned int)EMIT_PAIRS, k_total - first);
    unsigned int tid = threadIdx.x;
    if (tid < pairs) {
        unsigned int o = sorted_values[first + tid];
        s_o[tid] = o;
        s_head[tid] = (o / n) << tile_bits;
        s_rect[tid] = rects[o];
        s_off[tid] = offsets[first + tid];
    }
    if (tid == 0) s_end = first + pairs < k_total ? offsets[first + pairs] : m_total;
    __syncthreads();
    unsigned int begin = s_off[0], end = s_end;
    for (unsigned int pos = begin + tid; pos < end; pos += blockDim.x) {
        // The last pair whose offset is at most pos owns it.
        unsigned int lo = 0, hi = pairs;
        while (hi - lo > 1) {
            unsigned int mid = (lo + hi) >> 1;
            if (s_off[mid] <= pos) lo = mid; else hi = mid;
        }
        uint2 r = s_rect[lo];
        unsigned int x0 = r.x & 0xffffu, y0 = r.x >> 16, x1 = r.y & 0xffffu;
        unsigned int local = pos - s_off[lo], w = x1 - x0;
        unsigned int ty = y0 + local / w, tx = x0 + local % w;
        keys[pos] = s_head[lo] | (ty * tiles_x + tx);
        values[pos] = s_o[lo];
    }
}

#define RADIX_THREADS 256
#define RADIX_ITEMS 8
#define RADIX_CHUNK (RADIX_THREADS * RADIX_ITEMS)

// Digit counts per block, stored digit-major: hist[digit * blocks + block].
template <typename K>
__device__ void radix_histogram_impl(const K* __restrict__ keys, unsigned int m, unsigned int shift,
                                     unsigned int* __restrict__ hist)
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

// Stable scatter by one 8-bit digit, in two phases so the global writes are coalesced: the
// block first ranks its chunk (in order, 256 keys at a time: equal digits of lower threads via
// warp match, then of lower warps) and places it in shared memory grouped by digit, then
// writes each digit's run to its global position in consecutive addresses.
template <typename K>
__device__ void radix_scatter_impl(const K* __restrict__ keys_in, const unsigned int* __restrict__ values_in,
                                   unsigned int m, unsigned int shift, const unsigned int* __restrict__ offsets,
                                   K* __restrict__ keys_out, unsigned int* __restrict__ values_out)
{
    __shared__ unsigned int s_base[256];         // global start of each digit for this block
    __shared__ unsigned int s_start[256];        // start of each digit within the chunk
    __shared__ unsigned int s_next[256];         // next free slot of each digit within the chunk
    __shared__ unsigned int s_warp[RADIX_THREADS / 32][256];
    __shared__ unsigned int s_scan[RADIX_THREADS / 32];
    __shared__ K s_keys[RADIX_CHUNK];
    __shared__ unsigned int s_vals[RADIX_CHUNK];
    unsigned int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    unsigned int blocks = gridDim.x;
    unsigned int slot = tid * blocks + blockIdx.x;
    unsigned int global_start = offsets[slot];
    // This block's count of digit `tid`: the next digit-major entry minus this one.
    unsigned int count = (slot + 1 < 256 * blocks ? offsets[slot + 1] : m) - global_start;
    s_base[tid] = global_start;
    // Exclusive scan of the 256 counts (one per thread) for the chunk-local starts.
    unsigned int incl = count;
    for (int off = 1; off < 32; off <<= 1) {
        unsigned int t = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += t;
    }
    if (lane == 31) s_scan[warp] = incl;
    __syncthreads();
    unsigned int before = 0;
    for (unsigned int w = 0; w < warp; ++w) before += s_scan[w];
    s_start[tid] = before + incl - count;
    s_next[tid] = before + incl - count;
    unsigned int lt_mask = (1u << lane) - 1u;
    unsigned int base = blockIdx.x * RADIX_CHUNK;
    unsigned int chunk = min((unsigned int)RADIX_CHUNK, m - base);
    for (unsigned int step = 0; step < RADIX_ITEMS; ++step) {
        unsigned int k = step * RADIX_THREADS + tid;
        bool valid = k < chunk;
        K key = valid ? keys_in[base + k] : (K)0;
        // Invalid lanes take digit 256, which no valid lane shares.
        unsigned int digit = valid ? (unsigned int)(key >> shift) & 0xffu : 256u;
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) s_warp[w][tid] = 0;
        __syncthreads();
        unsigned int peers = __match_any_sync(0xffffffffu, digit);
        unsigned int rank = __popc(peers & lt_mask);
        if (valid && rank == 0) s_warp[warp][digit] = __popc(peers);
        __syncthreads();
        unsigned int total = 0;
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) {
            unsigned int c = s_warp[w][tid];
            s_warp[w][tid] = total;
            total += c;
        }
        __syncthreads();
        if (valid) {
            unsigned int local = s_next[digit] + s_warp[warp][digit] + rank;
            s_keys[local] = key;
            s_vals[local] = values_in[base + k];
        }
        __syncthreads();
        s_next[tid] += total;
        __syncthreads();
    }
    for (unsigned int i = tid; i < chunk; i += RADIX_THREADS) {
        K key = s_keys[i];
        unsigned int digit = (unsigned int)(key >> shift) & 0xffu;
        unsigned int pos = s_base[digit] + (i - s_start[digit]);
        keys_out[pos] = key;
        values_out[pos] = s_vals[i];
    }
}

extern "C" __global__ void radix_histogram_u64(const unsigned long long* keys, unsigned int m, unsigned int shift,
                                               unsigned int* hist)
{ radix_histogram_impl(keys, m, shift, hist); }
extern "C" __global__ void radix_histogram_u32(const unsigned int* keys, unsigned int m, unsigned int shift,
                                               unsigned int* hist)
{ radix_histogram_impl(keys, m, shift, hist); }
extern "C" __global__ void radix_scatter_u64(const unsigned long long* keys_in, const unsigned int* values_in,
                                             unsigned int m, unsigned int shift, const unsigned int* offsets,
                                             unsigned long long* keys_out, unsigned int* values_out)
{ radix_scatter_impl(keys_in, values_in, m, shift, offsets, keys_out, values_out); }
extern "C" __global__ void radix_scatter_u32(const unsigned int* keys_in, const unsigned int* values_in,
                                             unsigned int m, unsigned int shift, const unsigned int* offsets,
                                             unsigned int* keys_out, unsigned int* values_out)
{ radix_scatter_impl(keys_in, values_in, m, shift, offsets, keys_out, values_out); }

// Start and end of every (view, tile) run in the sorted keys; ranges must be zeroed first.
extern "C" __global__ void tile_ranges(const unsigned int* __restrict__ keys, unsigned int m,
                                       uint2* __restrict__ ranges)
{
    unsigned int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= m) return;
    unsigned int id = keys[k];
    if (k == 0 || keys[k - 1] != id) ranges[id].x = k;
    if (k == m - 1 || keys[k + 1] != id) ranges[id].y = k + 1;
}
