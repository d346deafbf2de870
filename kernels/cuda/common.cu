// Shared helpers for the SPL kernels. Prepended by kernels/cupy_cuda/module.py to each op's source
// and compiled by NVRTC through cupy.RawModule: no #include, no host code.
//
// Row layout (PyTorch's persistent softmax, aten/src/ATen/native/cuda/PersistentSoftmax.cuh):
// a row of C classes is padded to PADDED = 2^LOG2 and held in registers by one "warp" of
// WARP = min(PADDED, 32) lanes, ITERS = PADDED / WARP elements per lane; a warp handles ROWS rows
// (2 when PADDED <= 128, else 1); blocks are 128 threads = (WARP, 128 / WARP). Warps narrower than
// 32 lanes are sub-groups of a hardware warp: every lane executes every shuffle (no early exit),
// and shuffles pass `width = WARP` so they stay inside their row's lanes.
// The host mirror of this table is kernels/cupy_cuda/module.py:RowConfig.

#define SPL_THREADS_PER_BLOCK 128

template <int LOG2>
struct RowCfg {
    static constexpr int PADDED = 1 << LOG2;
    static constexpr int WARP = PADDED < 32 ? PADDED : 32;
    static constexpr int ITERS = PADDED / WARP;
    static constexpr int ROWS = PADDED <= 128 ? 2 : 1;
    static constexpr int WARPS_PER_BLOCK = SPL_THREADS_PER_BLOCK / WARP;
    static constexpr int ROWS_PER_BLOCK = WARPS_PER_BLOCK * ROWS;
};

__device__ __forceinline__ float spl_inf() { return __int_as_float(0x7f800000); }

template <int WIDTH>
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = WIDTH / 2; off > 0; off /= 2) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off, WIDTH));
    }
    return v;
}

// XOR-butterfly sums: a + b == b + a bitwise, so every lane of the group ends with the same value.
template <int WIDTH, typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int off = WIDTH / 2; off > 0; off /= 2) {
        v += __shfl_xor_sync(0xffffffffu, v, off, WIDTH);
    }
    return v;
}

template <int WIDTH>
__device__ __forceinline__ int warp_or(int v) {
#pragma unroll
    for (int off = WIDTH / 2; off > 0; off /= 2) {
        v |= __shfl_xor_sync(0xffffffffu, v, off, WIDTH);
    }
    return v;
}

// Arg-max over the lanes in the order (value descending, index ascending): a total order, so all
// lanes agree on the winner and ties go to the lower class index (the rule of every backend).
template <int WIDTH>
__device__ __forceinline__ void warp_argmax(float& v, int& j) {
#pragma unroll
    for (int off = WIDTH / 2; off > 0; off /= 2) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off, WIDTH);
        const int oj = __shfl_xor_sync(0xffffffffu, j, off, WIDTH);
        if (ov > v || (ov == v && oj < j)) {
            v = ov;
            j = oj;
        }
    }
}

// Sum over the 128 threads of a block through shared memory; the result is returned to thread 0.
// Every thread of the block must call it (it contains __syncthreads()).
__device__ __forceinline__ double block_sum(double v, double* shared) {
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    shared[tid] = v;
    __syncthreads();
#pragma unroll
    for (int s = SPL_THREADS_PER_BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) shared[tid] += shared[tid + s];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();  // shared[] may be reused right after
    return total;
}

// Fill `total` floats with `value` (the `smooth` rule).
extern "C" __global__ void fill_value(float* __restrict__ out, long long total, float value) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = value;
    }
}
