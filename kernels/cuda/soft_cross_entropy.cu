// Weighted soft-target cross-entropy (paper Eq. (3); docs/labeling.md#loss), forward and gradient in ONE launch
// (kernels/cupy_cuda/soft_cross_entropy.py launches it; formulas in
// kernels/reference/soft_cross_entropy.py). Requires common.cu before it.
//
// MODE 0 = sigmoid (Caffe SigmoidCrossEntropyLoss with real targets):
//   loss += w_i * [max(x,0) - x*y + log1p(exp(-|x|))],  grad = w_i * (sigmoid(x) - y) / D
// MODE 1 = softmax against q = y / sum(y) over the kept classes:
//   loss += w_i * q * (lse - x),                        grad = w_i * (p - q) / D
// Samples with w_i = 0 and elements with mask 0 are skipped (grad 0, targets never read).
//
// The scalar loss needs a grid-wide sum without a second launch: blocks loop over row groups
// (grid capped by the host at a few blocks per SM), each writes its partial sum to
// partials[blockIdx.x], and the last block to finish (atomic ticket on *counter, the CUDA
// "threadFenceReduction" sample pattern) adds the partials in a fixed order, writes the loss and
// resets *counter to 0 for the next launch on this stream. Deterministic for a given grid size.

template <int LOG2, int MODE>
__global__ void sce_forward(const float* __restrict__ x, const float* __restrict__ y,
                            const float* __restrict__ w, const unsigned char* __restrict__ mask,
                            float* __restrict__ grad, double* __restrict__ partials,
                            unsigned int* __restrict__ counter, float* __restrict__ loss,
                            int n, int c, int has_w, int has_mask, float inv_norm) {
    using Cfg = RowCfg<LOG2>;
    __shared__ double shared[SPL_THREADS_PER_BLOCK];
    __shared__ int is_last;
    const int lane = threadIdx.x;
    double acc = 0.0;  // this thread's share of sum_i w_i sum_j loss_ij

    // The loop bound is uniform over the block, so whole hardware warps shuffle together.
    for (long long block_first = (long long)blockIdx.x * Cfg::ROWS_PER_BLOCK; block_first < n;
         block_first += (long long)gridDim.x * Cfg::ROWS_PER_BLOCK) {
        const long long first = block_first + (long long)threadIdx.y * Cfg::ROWS;
#pragma unroll
        for (int r = 0; r < Cfg::ROWS; ++r) {
            const long long row = first + r;
            const float wr = row < n ? (has_w ? w[row] : 1.0f) : 0.0f;
            float xv[Cfg::ITERS];
            float yv[Cfg::ITERS];
            bool keep[Cfg::ITERS];
#pragma unroll
            for (int it = 0; it < Cfg::ITERS; ++it) {
                const int col = lane + it * Cfg::WARP;
                const bool k = row < n && col < c && wr != 0.0f && (!has_mask || mask[row * c + col] != 0);
                keep[it] = k;
                xv[it] = k ? x[row * c + col] : 0.0f;
                yv[it] = k ? y[row * c + col] : 0.0f;
            }
            float g[Cfg::ITERS];
            if (MODE == 0) {
#pragma unroll
                for (int it = 0; it < Cfg::ITERS; ++it) {
                    g[it] = 0.0f;
                    if (keep[it]) {
                        const float xi = xv[it];
                        const float e = expf(-fabsf(xi));
                        const float l = fmaxf(xi, 0.0f) - xi * yv[it] + log1pf(e);
                        const float s = xi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
                        acc += (double)(wr * l);
                        g[it] = wr * (s - yv[it]) * inv_norm;
                    }
                }
            } else {
                float m = -spl_inf();
                float mass = 0.0f;
#pragma unroll
                for (int it = 0; it < Cfg::ITERS; ++it) {
                    if (keep[it]) {
                        m = fmaxf(m, xv[it]);
                        mass += yv[it];
                    }
                }
                m = warp_max<Cfg::WARP>(m);
                mass = warp_sum<Cfg::WARP>(mass);
                float z = 0.0f;
#pragma unroll
                for (int it = 0; it < Cfg::ITERS; ++it) {
                    xv[it] = keep[it] ? xv[it] - m : 0.0f;  // shifted logits
                    z += keep[it] ? expf(xv[it]) : 0.0f;
                }
                z = warp_sum<Cfg::WARP>(z);
                const bool active = mass > 0.0f;  // identical on all lanes of the row
                const float log_z = logf(z);
                const float inv_mass = 1.0f / mass;
                const float inv_z = 1.0f / z;
#pragma unroll
                for (int it = 0; it < Cfg::ITERS; ++it) {
                    g[it] = 0.0f;
                    if (keep[it] && active) {
                        const float q = yv[it] * inv_mass;
                        acc += (double)(wr * q * (log_z - xv[it]));  // lse - x = log z - (x - m)
                        g[it] = wr * (expf(xv[it]) * inv_z - q) * inv_norm;
                    }
                }
            }
            if (row < n) {
#pragma unroll
                for (int it = 0; it < Cfg::ITERS; ++it) {
                    const int col = lane + it * Cfg::WARP;
                    if (col < c) grad[row * c + col] = g[it];
                }
            }
        }
    }

    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const double block_total = block_sum(acc, shared);
    if (tid == 0) {
        partials[blockIdx.x] = block_total;
        __threadfence();  // the partial is visible to every block before the ticket is taken
        const unsigned int ticket = atomicAdd(counter, 1u);
        is_last = ticket == gridDim.x - 1;
    }
    __syncthreads();
    if (is_last) {
        double t = 0.0;
        for (int b = tid; b < (int)gridDim.x; b += SPL_THREADS_PER_BLOCK) {
            t += ((volatile double*)partials)[b];
        }
        const double total = block_sum(t, shared);
        if (tid == 0) {
            loss[0] = (float)(total * (double)inv_norm);
            *counter = 0u;
        }
    }
}
