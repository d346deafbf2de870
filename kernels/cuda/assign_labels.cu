// Label-assignment rules (paper §2.3, Eqs. (1)–(2); docs/labeling.md) (kernels/cupy_cuda/assign_labels.py launches them).
// Requires common.cu before it. Inputs: float32 N×C row-major, contiguous; int32 sizes.
// Each kernel counts the rows holding a non-finite input into *bad_rows (zeroed by the caller),
// so rejecting them costs no extra pass over the input.

// SPL, Eq. (2): out[i] = softmax(v_i / T), v = sigmoid(s) when from_probs, else s.
// One pass: load + transform, row max, exp + row sum, divide + store (the row stays in registers).
template <int LOG2>
__global__ void spl_rows(const float* __restrict__ scores, float* __restrict__ out, int n, int c,
                         int from_probs, float inv_t, int* __restrict__ bad_rows) {
    using Cfg = RowCfg<LOG2>;
    const int lane = threadIdx.x;
    const long long first = ((long long)blockIdx.x * Cfg::WARPS_PER_BLOCK + threadIdx.y) * Cfg::ROWS;
    float v[Cfg::ROWS][Cfg::ITERS];
    int bad[Cfg::ROWS];
#pragma unroll
    for (int r = 0; r < Cfg::ROWS; ++r) {
        const long long row = first + r;
        bad[r] = 0;
#pragma unroll
        for (int it = 0; it < Cfg::ITERS; ++it) {
            const int col = lane + it * Cfg::WARP;
            float x = -spl_inf();
            if (row < n && col < c) {
                float s = scores[row * c + col];
                if (!isfinite(s)) bad[r] = 1;
                if (from_probs) s = 1.0f / (1.0f + expf(-s));
                x = s * inv_t;
            }
            v[r][it] = x;
        }
    }
#pragma unroll
    for (int r = 0; r < Cfg::ROWS; ++r) {
        const long long row = first + r;
        float m = v[r][0];
#pragma unroll
        for (int it = 1; it < Cfg::ITERS; ++it) m = fmaxf(m, v[r][it]);
        m = warp_max<Cfg::WARP>(m);
        float sum = 0.0f;
#pragma unroll
        for (int it = 0; it < Cfg::ITERS; ++it) {
            v[r][it] = expf(v[r][it] - m);  // padding: exp(-inf) = 0
            sum += v[r][it];
        }
        sum = warp_sum<Cfg::WARP>(sum);
        const int any_bad = warp_or<Cfg::WARP>(bad[r]);
        if (row < n) {
#pragma unroll
            for (int it = 0; it < Cfg::ITERS; ++it) {
                const int col = lane + it * Cfg::WARP;
                if (col < c) out[row * c + col] = v[r][it] / sum;
            }
            if (any_bad && lane == 0) atomicAdd(bad_rows, 1);
        }
    }
}

// Pseudo labels, Eq. (1) (and `random` on uniform keys): 1 for the k largest keys of a row.
// k rounds of a warp arg-max over the elements strictly after the previous pick in the order
// (value descending, index ascending); an element is selected iff it is not after the k-th pick.
template <int LOG2>
__global__ void top_k_rows(const float* __restrict__ keys, float* __restrict__ out, int n, int c,
                           int k, int* __restrict__ bad_rows) {
    using Cfg = RowCfg<LOG2>;
    const int lane = threadIdx.x;
    const long long first = ((long long)blockIdx.x * Cfg::WARPS_PER_BLOCK + threadIdx.y) * Cfg::ROWS;
    const int no_index = 0x7fffffff;
#pragma unroll
    for (int r = 0; r < Cfg::ROWS; ++r) {
        const long long row = first + r;
        float v[Cfg::ITERS];
        int bad = 0;
#pragma unroll
        for (int it = 0; it < Cfg::ITERS; ++it) {
            const int col = lane + it * Cfg::WARP;
            v[it] = -spl_inf();
            if (row < n && col < c) {
                v[it] = keys[row * c + col];
                if (!isfinite(v[it])) bad = 1;
            }
        }
        float pv = spl_inf();
        int pj = -1;
        for (int round = 0; round < k; ++round) {  // k is uniform: all lanes shuffle together
            float bv = -spl_inf();
            int bj = no_index;
#pragma unroll
            for (int it = 0; it < Cfg::ITERS; ++it) {
                const int col = lane + it * Cfg::WARP;
                const float x = v[it];
                const bool eligible = col < c && (x < pv || (x == pv && col > pj));
                if (eligible && (bj == no_index || x > bv)) {  // ascending col: ties keep the first
                    bv = x;
                    bj = col;
                }
            }
            warp_argmax<Cfg::WARP>(bv, bj);
            pv = bv;
            pj = bj;
        }
        const int any_bad = warp_or<Cfg::WARP>(bad);
        if (row < n) {
#pragma unroll
            for (int it = 0; it < Cfg::ITERS; ++it) {
                const int col = lane + it * Cfg::WARP;
                const float x = v[it];
                if (col < c) out[row * c + col] = (x > pv || (x == pv && col <= pj)) ? 1.0f : 0.0f;
            }
            if (any_bad && lane == 0) atomicAdd(bad_rows, 1);
        }
    }
}
