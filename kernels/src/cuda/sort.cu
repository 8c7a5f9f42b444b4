// Binning and ordering, in two stable LSD radix sorts: the visible (view, gaussian) pairs by
// depth, then one key per touched tile, emitted in that order, by tile. Every tile's list ends
// up in depth order with ties by gaussian index, the order gsplat's single (view, tile, depth)
// sort gives, while the long intersection list is sorted on at most 15 bits instead of 47.
// Then the start/end of every (view, tile). CPU reference: cpu/raster.rs.
//
// The view goes into one of the two keys, not both: the pairs arrive in view order, so either
// the depth sort keeps views apart ((view, depth) keys) and the tile sort may ignore them
// (a stable sort by tile leaves each (view, tile) run contiguous and in depth order), or the
// depth sort mixes views and the tile sort separates them again ((view, tile) keys).
//
// Scans and radix passes are single pass, with decoupled look-back (Merrill & Garland): each
// block takes a ticket for its chunk (so chunks start in order and every block waits only on
// blocks already running), publishes its own total as soon as it has it, then walks back over
// its predecessors' totals until it meets one that already holds everything before it. A
// radix pass needs only the whole input's digit counts, which the kernel that writes the keys
// counts for every pass at once, so no pass has a separate histogram or scan.

// Threads, items per thread, digits, the sort_state words (zeroed by the host before each
// render: tickets, totals, digit counts) and the look-back count bits come from the prelude
// (gpu/layout.rs). One thread per digit: flush_digits and radix_pass rely on it, and
// block_exclusive_scan scans blocks of RADIX_DIGITS threads.
static_assert(SCAN_THREADS == RADIX_DIGITS && RADIX_THREADS == RADIX_DIGITS && EMIT_PAIRS == RADIX_DIGITS,
              "one thread per radix digit");
#define SCAN_WARPS (RADIX_DIGITS / 32)

// Radix look-back words: flag in the top two bits, count below (the host keeps every sort
// under 2^LOOKBACK_COUNT_BITS keys). Scan look-back words are 64-bit, so an intersection
// total that would not fit 32 bits is still summed exactly and reported.
#define LB_AGGREGATE (1u << LOOKBACK_COUNT_BITS)
#define LB_PREFIX (2u << LOOKBACK_COUNT_BITS)
#define LB_FLAGS (3u << LOOKBACK_COUNT_BITS)
#define LB_VALUE ((1u << LOOKBACK_COUNT_BITS) - 1u)
#define LB64_AGGREGATE (1ull << 62)
#define LB64_PREFIX (2ull << 62)
#define LB64_VALUE ((1ull << 62) - 1ull)

// Pass p of a plan: shift in byte p of `shifts`, width in byte p of `widths`.
__device__ __forceinline__ unsigned int plan_byte(unsigned int packed, unsigned int p) {
    return (packed >> (8 * p)) & 0xffu;
}

// Counts `key`'s digit of every pass into the block's shared counts.
__device__ __forceinline__ void count_digits(unsigned int key, unsigned int passes, unsigned int shifts,
                                             unsigned int widths, unsigned int* s_counts)
{
    for (unsigned int p = 0; p < passes; ++p) {
        unsigned int digit = (key >> plan_byte(shifts, p)) & ((1u << plan_byte(widths, p)) - 1u);
        atomicAdd(&s_counts[p * RADIX_DIGITS + digit], 1u);
    }
}

// Adds the block's shared digit counts to the global ones (blockDim.x == RADIX_DIGITS).
__device__ __forceinline__ void flush_digits(const unsigned int* s_counts, unsigned int passes,
                                             unsigned int* counts)
{
    for (unsigned int p = 0; p < passes; ++p) {
        unsigned int c = s_counts[p * RADIX_DIGITS + threadIdx.x];
        if (c) atomicAdd(&counts[p * RADIX_DIGITS + threadIdx.x], c);
    }
}

// Exclusive scan of one value per thread over a RADIX_DIGITS-thread block; `total` gets the sum.
__device__ __forceinline__ unsigned int block_exclusive_scan(unsigned int value, unsigned int* s_warp,
                                                             unsigned int* total)
{
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned int incl = value;
    for (int off = 1; off < 32; off <<= 1) {
        unsigned int t = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += t;
    }
    if (lane == 31) s_warp[warp] = incl;
    __syncthreads();
    unsigned int before = 0, sum = 0;
    for (unsigned int w = 0; w < SCAN_WARPS; ++w) {
        unsigned int s = s_warp[w];
        if (w < warp) before += s;
        sum += s;
    }
    __syncthreads();
    *total = sum;
    return before + incl - value;
}

// Warp 0 of block `b` adds up everything before it: publishes `aggregate`, walks back 32
// predecessors at a time, publishes its inclusive prefix; returns the exclusive prefix (in
// every lane of warp 0).
__device__ unsigned long long scan_look_back(unsigned long long* status, unsigned int b,
                                             unsigned long long aggregate)
{
    volatile unsigned long long* st = status;
    unsigned int lane = threadIdx.x & 31;
    if (b == 0) {
        if (lane == 0) st[0] = LB64_PREFIX | aggregate;
        return 0;
    }
    if (lane == 0) st[b] = LB64_AGGREGATE | aggregate;
    unsigned long long exclusive = 0;
    int top = (int)b - 1;
    while (true) {
        int idx = top - (int)lane;
        unsigned long long s = idx >= 0 ? st[idx] : LB64_PREFIX;
        while (__any_sync(0xffffffffu, (s >> 62) == 0)) {
            if ((s >> 62) == 0) s = st[idx];
        }
        unsigned int prefixes = __ballot_sync(0xffffffffu, (s & LB64_PREFIX) != 0);
        // Lane 0 is the nearest predecessor: sum up to and including the nearest prefix.
        unsigned int last = prefixes ? (unsigned int)(__ffs(prefixes) - 1) : 31u;
        unsigned long long v = lane <= last ? (s & LB64_VALUE) : 0ull;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        exclusive += v;
        if (prefixes) break;
        top -= 32;
    }
    if (lane == 0) st[b] = LB64_PREFIX | (exclusive + aggregate);
    return exclusive;
}

// Single-pass exclusive scan across the grid of one value per thread, block `b` (from its
// ticket) covering the blocks before it: returns the block's prefix to every thread, this
// thread's offset within the block in `before`, and the total through this block in
// `through` (the whole total, in the last block).
__device__ unsigned long long grid_exclusive_scan(unsigned int local, unsigned int b, unsigned long long* status,
                                                  unsigned int* before, unsigned long long* through)
{
    __shared__ unsigned int s_warp[SCAN_WARPS];
    __shared__ unsigned long long s_prefix;
    unsigned int block_total;
    *before = block_exclusive_scan(local, s_warp, &block_total);
    if (threadIdx.x < 32) {
        unsigned long long prefix = scan_look_back(status, b, block_total);
        if (threadIdx.x == 0) s_prefix = prefix;
    }
    __syncthreads();
    *through = s_prefix + block_total;
    return s_prefix;
}

// Single-pass compaction of the visible (view, gaussian) pairs (tile count > 0) into depth
// keys, in index order, with value view * n + gaussian. Key: (ordered depth bits - those of
// the nearest near plane), with the view above them when `view_shift` < 32. Counts every
// pass's digits and writes how many pairs are visible.
extern "C" __global__ void visible_depth_keys(const unsigned int* __restrict__ counts, const float* __restrict__ depths,
                                              unsigned int vn, unsigned int n, unsigned int near_ordered,
                                              unsigned int view_shift, unsigned int passes, unsigned int shifts,
                                              unsigned int widths, unsigned int* __restrict__ keys,
                                              unsigned int* __restrict__ values, unsigned long long* status,
                                              unsigned int* __restrict__ state)
{
    __shared__ unsigned int s_block;
    __shared__ unsigned int s_counts[MAX_PASSES * RADIX_DIGITS];
    if (threadIdx.x == 0) s_block = atomicAdd(&state[STATE_TICKETS + TICKET_VISIBLE], 1u);
    for (unsigned int i = threadIdx.x; i < passes * RADIX_DIGITS; i += SCAN_THREADS) s_counts[i] = 0;
    __syncthreads();
    unsigned int b = s_block;
    unsigned int first = b * SCAN_TILE + threadIdx.x * SCAN_ITEMS;
    unsigned int flags = 0, local = 0;
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        if (first + k < vn && counts[first + k] > 0) { flags |= 1u << k; ++local; }
    }
    unsigned int before;
    unsigned long long through;
    unsigned int pos = (unsigned int)grid_exclusive_scan(local, b, status, &before, &through) + before;
    if (threadIdx.x == 0 && (b + 1) * SCAN_TILE >= vn) state[STATE_VISIBLE] = (unsigned int)through;
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        if (!(flags & (1u << k))) continue;
        unsigned int o = first + k;
        unsigned int key = float_to_ordered(depths[o]) - near_ordered;
        if (view_shift < 32) key |= (o / n) << view_shift;
        keys[pos] = key;
        values[pos] = o;
        count_digits(key, passes, shifts, widths, s_counts);
        ++pos;
    }
    __syncthreads();
    flush_digits(s_counts, passes, &state[STATE_DEPTH_DIGITS]);
}

// Single-pass scan of the tile counts in depth order (gathered through the sorted values) into
// emission offsets; the last block writes the total as two words. The grid covers every pair;
// blocks past the visible count leave at once.
extern "C" __global__ void emission_offsets(const unsigned int* __restrict__ sorted_values,
                                            const unsigned int* __restrict__ counts,
                                            unsigned int* __restrict__ offsets,
                                            unsigned long long* status, unsigned int* state)
{
    __shared__ unsigned int s_block;
    if (threadIdx.x == 0) s_block = atomicAdd(&state[STATE_TICKETS + TICKET_EMISSION], 1u);
    __syncthreads();
    unsigned int b = s_block;
    unsigned int k_total = state[STATE_VISIBLE];
    if (b * SCAN_TILE >= k_total) return;
    unsigned int first = b * SCAN_TILE + threadIdx.x * SCAN_ITEMS;
    unsigned int v[SCAN_ITEMS];
    unsigned int local = 0;
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        v[k] = first + k < k_total ? counts[sorted_values[first + k]] : 0u;
        local += v[k];
    }
    unsigned int before;
    unsigned long long through;
    // Offsets past 2^32 wrap; the total's low word saturates (below), so emit_tile_keys then
    // writes nothing and the host reports the total.
    unsigned int running = (unsigned int)grid_exclusive_scan(local, b, status, &before, &through) + before;
    if (threadIdx.x == 0 && (b + 1) * SCAN_TILE >= k_total) {
        // The low word saturates, so a total past 2^32 still reads as too many below.
        state[STATE_INTERSECTIONS] = through > 0xffffffffull ? 0xffffffffu : (unsigned int)through;
        state[STATE_INTERSECTIONS + 1] = (unsigned int)(through >> 32);
    }
    for (int k = 0; k < SCAN_ITEMS; ++k) {
        if (first + k < k_total) offsets[first + k] = running;
        running += v[k];
    }
}

// Walks the depth-sorted pairs and writes one (view << tile_bits | tile) key per touched tile,
// row by row as gsplat walks them; a stable sort on these keys then leaves every tile's
// gaussians in depth order (ties by index). Counts the tile sort's digits on the way.
//
// The visible and intersection counts are read from `state`; the grid covers every pair.
// When the intersections would not fit the `capacity` the key buffers hold, nothing is
// written: the host sees the count, grows the buffers and renders again.
//
// Load-balanced so the writes are coalesced: a block takes EMIT_PAIRS consecutive pairs into
// shared memory, then its threads stride over the block's whole output range together, each
// finding its pair by binary search over the pairs' offsets (a pair touching hundreds of
// tiles no longer leaves one thread writing them one after another while its warp waits).

extern "C" __global__ void emit_tile_keys(const unsigned int* __restrict__ sorted_values,
                                          const unsigned int* __restrict__ offsets, const uint2* __restrict__ rects,
                                          unsigned int n, unsigned int tiles_x, unsigned int tile_bits,
                                          unsigned int capacity, unsigned int passes, unsigned int shifts,
                                          unsigned int widths, unsigned int* __restrict__ keys,
                                          unsigned int* __restrict__ values, unsigned int* __restrict__ state)
{
    __shared__ unsigned int s_off[EMIT_PAIRS];
    __shared__ unsigned int s_o[EMIT_PAIRS];
    __shared__ unsigned int s_head[EMIT_PAIRS];
    __shared__ uint2 s_rect[EMIT_PAIRS];
    __shared__ unsigned int s_end;
    __shared__ unsigned int s_counts[MAX_PASSES * RADIX_DIGITS];
    const unsigned int k_total = state[STATE_VISIBLE], m_total = state[STATE_INTERSECTIONS];
    unsigned int first = blockIdx.x * EMIT_PAIRS;
    if (first >= k_total || m_total > capacity) return;
    unsigned int pairs = min((unsigned int)EMIT_PAIRS, k_total - first);
    unsigned int tid = threadIdx.x;
    for (unsigned int i = tid; i < passes * RADIX_DIGITS; i += blockDim.x) s_counts[i] = 0;
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
        unsigned int key = s_head[lo] | (ty * tiles_x + tx);
        keys[pos] = key;
        values[pos] = s_o[lo];
        count_digits(key, passes, shifts, widths, s_counts);
    }
    __syncthreads();
    flush_digits(s_counts, passes, &state[STATE_TILE_DIGITS]);
}

// One stable radix pass on the `width`-bit digit at `shift` (width <= RADIX_DIGIT_BITS), in one kernel: each
// warp ranks its own 32 x RADIX_ITEMS consecutive keys of the block's chunk, 32 at a time, against its own
// digit counters (warp match, no block-wide barrier); the warps' counts then give each warp's
// offset within every digit. The block publishes its digit counts, looks back for the counts
// of the chunks before it (one thread per digit), places the chunk in shared memory grouped
// by digit, and writes each digit's run to consecutive global addresses. The key count, the
// whole input's digit counts and the pass's ticket are in `state` at the given word offsets.
// The grid is sized to stay resident, and each block takes tickets until the keys run out, so
// the host never needs the count; a count over `capacity` (the buffers' size) sorts nothing.
extern "C" __global__ void radix_pass(const unsigned int* __restrict__ keys_in,
                                      const unsigned int* __restrict__ values_in, unsigned int* state,
                                      unsigned int count_at, unsigned int capacity, unsigned int digits_at,
                                      unsigned int ticket_at, unsigned int shift, unsigned int width,
                                      unsigned int* status, unsigned int* __restrict__ keys_out,
                                      unsigned int* __restrict__ values_out)
{
    const unsigned int* digit_counts = state + digits_at;
    __shared__ unsigned int s_block;
    __shared__ unsigned int s_start[RADIX_DIGITS];   // start of each digit within the chunk
    __shared__ unsigned int s_base[RADIX_DIGITS];    // global position of the chunk's first key of each digit
    __shared__ unsigned int s_warp[RADIX_THREADS / 32][RADIX_DIGITS];  // per-warp counts, then offsets
    __shared__ unsigned int s_scan[RADIX_THREADS / 32];
    __shared__ unsigned int s_keys[RADIX_CHUNK];
    __shared__ unsigned int s_vals[RADIX_CHUNK];
    unsigned int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    unsigned int m = state[count_at];
    if (m > capacity) m = 0;
    for (;;) {
        if (tid == 0) s_block = atomicAdd(&state[ticket_at], 1u);
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) s_warp[w][tid] = 0;
        __syncthreads();
        unsigned int b = s_block;
        unsigned int base = b * RADIX_CHUNK;
        if (base >= m) return;
        unsigned int chunk = min((unsigned int)RADIX_CHUNK, m - base);
        unsigned int digits = 1u << width, mask = digits - 1u;
        unsigned int lt_mask = (1u << lane) - 1u;
        unsigned int* counters = s_warp[warp];
        unsigned int key[RADIX_ITEMS], val[RADIX_ITEMS], rank[RADIX_ITEMS];
        for (unsigned int step = 0; step < RADIX_ITEMS; ++step) {
            unsigned int k = warp * (32 * RADIX_ITEMS) + step * 32 + lane;
            bool valid = k < chunk;
            key[step] = valid ? keys_in[base + k] : 0u;
            val[step] = valid ? values_in[base + k] : 0u;
            // Invalid lanes take digit RADIX_DIGITS, which no valid lane shares.
            unsigned int digit = valid ? (key[step] >> shift) & mask : (unsigned int)RADIX_DIGITS;
            unsigned int peers = __match_any_sync(0xffffffffu, digit);
            unsigned int r = __popc(peers & lt_mask);
            unsigned int prior = valid ? counters[digit] : 0u;
            __syncwarp();
            if (valid && r == 0) counters[digit] = prior + __popc(peers);
            __syncwarp();
            rank[step] = prior + r;
        }
        __syncthreads();
        // Thread `tid` owns digit tid: the warps' counts become their offsets within the digit.
        unsigned int mine = 0;
        for (unsigned int w = 0; w < RADIX_THREADS / 32; ++w) {
            unsigned int c = s_warp[w][tid];
            s_warp[w][tid] = mine;
            mine += c;
        }
        unsigned int exclusive = 0;
        if (tid < digits) {
            volatile unsigned int* st = status;
            if (b == 0) {
                st[tid] = LB_PREFIX | mine;
            } else {
                st[b * digits + tid] = LB_AGGREGATE | mine;
                // Four predecessors per round trip; a word not yet published is read again.
                int p = (int)b - 1;
                while (true) {
                    unsigned int s[4];
                    for (int j = 0; j < 4; ++j) s[j] = p - j >= 0 ? st[(p - j) * digits + tid] : LB_PREFIX;
                    int j = 0;
                    bool found = false;
                    for (; j < 4; ++j) {
                        if ((s[j] & LB_FLAGS) == 0) break;
                        exclusive += s[j] & LB_VALUE;
                        if (s[j] & LB_PREFIX) { found = true; break; }
                    }
                    if (found) break;
                    p -= j;
                }
                st[b * digits + tid] = LB_PREFIX | (exclusive + mine);
            }
        }
        // Chunk-local starts, and where each digit starts in the whole output.
        unsigned int unused;
        unsigned int start = block_exclusive_scan(mine, s_scan, &unused);
        unsigned int global = block_exclusive_scan(tid < digits ? digit_counts[tid] : 0u, s_scan, &unused);
        s_start[tid] = start;
        s_base[tid] = global + exclusive;
        __syncthreads();
        for (unsigned int step = 0; step < RADIX_ITEMS; ++step) {
            unsigned int k = warp * (32 * RADIX_ITEMS) + step * 32 + lane;
            if (k < chunk) {
                unsigned int digit = (key[step] >> shift) & mask;
                unsigned int local = s_start[digit] + s_warp[warp][digit] + rank[step];
                s_keys[local] = key[step];
                s_vals[local] = val[step];
            }
        }
        __syncthreads();
        for (unsigned int i = tid; i < chunk; i += RADIX_THREADS) {
            unsigned int k = s_keys[i];
            unsigned int digit = (k >> shift) & mask;
            unsigned int pos = s_base[digit] + (i - s_start[digit]);
            keys_out[pos] = k;
            values_out[pos] = s_vals[i];
        }
        __syncthreads();  // the next chunk reuses the shared arrays
    }
}

// Start and end of every (view, tile) run in the sorted keys; ranges must be zeroed first.
// RANGE_KEYS (four) keys per thread (one 16-byte load) and the two neighbours, striding over the count in
// `state` (nothing when it is over `capacity`: the host renders again).
static_assert(RANGE_KEYS == 4, "tile_ranges reads its keys as one uint4");

extern "C" __global__ void tile_ranges(const unsigned int* __restrict__ keys, const unsigned int* __restrict__ state,
                                       unsigned int capacity, uint2* __restrict__ ranges)
{
    unsigned int m = state[STATE_INTERSECTIONS];
    if (m > capacity) return;
    for (unsigned int first = RANGE_KEYS * (blockIdx.x * blockDim.x + threadIdx.x); first < m;
         first += RANGE_KEYS * gridDim.x * blockDim.x) {
        unsigned int k[6];
        k[0] = first > 0 ? keys[first - 1] : 0xffffffffu;
        if (first + 4 <= m) {
            uint4 q = *reinterpret_cast<const uint4*>(keys + first);
            k[1] = q.x; k[2] = q.y; k[3] = q.z; k[4] = q.w;
        } else {
            for (unsigned int j = 0; j < 4; ++j) k[1 + j] = first + j < m ? keys[first + j] : 0xffffffffu;
        }
        k[5] = first + 4 < m ? keys[first + 4] : 0xffffffffu;
        for (unsigned int j = 0; j < 4; ++j) {
            unsigned int i = first + j;
            if (i >= m) break;
            unsigned int id = k[1 + j];
            if (i == 0 || k[j] != id) ranges[id].x = i;
            if (i == m - 1 || k[2 + j] != id) ranges[id].y = i + 1;
        }
    }
}

// Moves the crowded (view, tile) slots, those holding more than HEAVY_FACTOR times the average
// intersections per tile, to a list the rasteriser starts with: [slot, start, end] each, at
// most `cap` of them, their ranges marked taken (start 0xffffffff). On a centred object a few
// tiles hold most of the work; launched in tile order, the last view's would start last and
// leave the device idle around them. A model without such tiles keeps tile order, which
// suits it (neighbouring tiles share gaussians in the caches).
#define HEAVY_FACTOR 8ull

extern "C" __global__ void heavy_tiles(unsigned int* state, unsigned int capacity, unsigned int slots,
                                       unsigned int tiles, unsigned int cap, uint2* __restrict__ ranges,
                                       unsigned int* __restrict__ heavy)
{
    unsigned int slot = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long m = state[STATE_INTERSECTIONS];
    if (slot >= slots || m > capacity) return;
    uint2 r = ranges[slot];
    unsigned long long len = r.y - r.x;
    if (r.y <= r.x || len * tiles <= HEAVY_FACTOR * m) return;
    unsigned int at = atomicAdd(&state[STATE_HEAVY], 1u);
    if (at >= cap) return;  // stays in tile order
    heavy[HEAVY_WORDS * at] = slot;
    heavy[HEAVY_WORDS * at + 1] = r.x;
    heavy[HEAVY_WORDS * at + 2] = r.y;
    ranges[slot] = make_uint2(0xffffffffu, 0u);
}
