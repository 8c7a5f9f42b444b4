//! Device memory by raw address, and cuBLAS's SGEMM on row-major matrices. Everything the
//! scorer queues goes to one stream, so buffers are addressed directly (no per-argument
//! event bookkeeping) and kernels and GEMMs take the addresses as plain arguments.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use cudarc::{
    cublas::{sys as blas, CudaBlas},
    driver::{
        CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError, PushKernelArg,
        ValidAsZeroBits,
    },
};

use super::kernels::{launch, linear};
use crate::gpu::GpuError;

/// A device allocation and its address. Freed (stream-ordered) on drop.
#[derive(Debug)]
pub struct Buf<T> {
    slice: CudaSlice<T>,
    ptr: u64,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    pub fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Self, DriverError> {
        Ok(Self::wrap(stream, stream.alloc_zeros::<T>(len.max(1))?))
    }

    pub fn upload(stream: &Arc<CudaStream>, data: &[T]) -> Result<Self, DriverError> {
        if data.is_empty() {
            return Self::zeros(stream, 1);
        }
        Ok(Self::wrap(stream, stream.clone_htod(data)?))
    }

    fn wrap(stream: &Arc<CudaStream>, slice: CudaSlice<T>) -> Self {
        let ptr = {
            let (ptr, _sync) = slice.device_ptr(stream);
            ptr
        };
        Self { slice, ptr }
    }

    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// The address of element `offset`.
    pub fn at(&self, offset: usize) -> u64 {
        self.ptr + (offset * std::mem::size_of::<T>()) as u64
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    pub fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }

    pub fn slice_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }

    pub fn zero(&mut self, stream: &Arc<CudaStream>) -> Result<(), DriverError> {
        stream.memset_zeros(&mut self.slice)
    }
}

/// The address of a slice someone else owns (the renderer's image buffer).
pub fn address_of<T>(stream: &Arc<CudaStream>, slice: &CudaSlice<T>) -> u64 {
    let (ptr, _sync) = slice.device_ptr(stream);
    ptr
}

/// Whether the GEMMs may use TF32 or FP16 tensor cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Math {
    /// Plain FP32 (cuBLAS's default math never uses TF32 unless forced by environment).
    Fp32,
    Tf32,
    /// FP16 tensor-core products with FP32 accumulation and FP32 output for every product
    /// whose B operand is a weight with an FP16 copy ([`Blas::add_half_weight`]): the A
    /// operand is rounded to FP16 into a scratch buffer first (`CUDA_R_16F` A and B,
    /// `CUDA_R_32F` C, `CUBLAS_COMPUTE_32F`). Every other product (attention's, between
    /// activations) runs as under [`Math::Tf32`].
    Fp16,
}

/// What [`Math::Fp16`] needs: the FP32 → FP16 kernel (`f32_to_f16` of `alignment.cu`), the
/// FP16 copy of each registered weight keyed by its FP32 copy's address, and the scratch
/// buffer the A operands are rounded into (grown on demand; one at a time on the stream).
#[derive(Debug)]
struct Half {
    to_f16: CudaFunction,
    weights: HashMap<u64, Buf<u16>>,
    weight_bytes: usize,
    scratch: Mutex<Option<Buf<u16>>>,
}

/// A row-major matrix operand: its address, leading dimension and batch stride (elements).
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    pub ptr: u64,
    pub ld: usize,
    pub stride: usize,
}

impl Mat {
    pub fn new(ptr: u64, ld: usize) -> Self {
        Self { ptr, ld, stride: 0 }
    }
    pub fn strided(ptr: u64, ld: usize, stride: usize) -> Self {
        Self { ptr, ld, stride }
    }
}

/// The elements an operand spans from its head (for its FP16 copy): `batch` matrices of
/// `rows` rows of `cols`, rows `ld` apart, matrices `stride` apart.
fn extent(x: Mat, (rows, cols): (usize, usize), batch: usize) -> usize {
    if rows == 0 || cols == 0 || batch == 0 {
        return 0;
    }
    (batch - 1)
        .saturating_mul(x.stride)
        .saturating_add((rows - 1).saturating_mul(x.ld))
        .saturating_add(cols)
}

/// cuBLAS on the scorer's stream.
#[derive(Debug)]
pub struct Blas {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    math: Option<Math>,
    half: Option<Half>,
}

fn int(v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::TooLarge {
        what: "GEMM dimension",
        needed: v,
        limit: i32::MAX as usize,
    })
}

/// Row-major `C[m×n] = A[m×k] · op(B)` as column-major cuBLAS computes it, `Cᵀ = op(B)ᵀ·Aᵀ`
/// (B first, A second): B's operation and the dimensions in cuBLAS's order (n, m, k).
fn swapped(
    b_transposed: bool,
    (m, n, k): (usize, usize, usize),
) -> Result<(blas::cublasOperation_t, [i32; 3]), GpuError> {
    let op_b = if b_transposed {
        blas::cublasOperation_t::CUBLAS_OP_T
    } else {
        blas::cublasOperation_t::CUBLAS_OP_N
    };
    Ok((op_b, [int(n)?, int(m)?, int(k)?]))
}

impl Blas {
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self, GpuError> {
        // SAFETY: only tries to open the shared library; cudarc panics later if it is absent.
        if !unsafe { blas::is_culib_present() } {
            return Err(GpuError::Unavailable(
                "the cuBLAS library (libcublas) was not found",
            ));
        }
        Ok(Self {
            blas: CudaBlas::new(stream.clone())?,
            stream: stream.clone(),
            math: None,
            half: None,
        })
    }

    /// Makes [`Math::Fp16`] possible: `to_f16` is `alignment.cu`'s `f32_to_f16`
    /// (`(const float* x, unsigned long long n, unsigned short* y)`). Without it (the
    /// scorer's handle) [`Math::Fp16`] runs every product as [`Math::Tf32`].
    pub fn enable_half(&mut self, to_f16: CudaFunction) {
        self.half = Some(Half {
            to_f16,
            weights: HashMap::new(),
            weight_bytes: 0,
            scratch: Mutex::new(None),
        });
    }

    /// Makes an FP16 copy (round to nearest even) of the `len` floats of the weight at `w`,
    /// which [`Math::Fp16`] products whose B operand starts at `w` then use. Queued on the
    /// stream; a second call for the same address does nothing.
    ///
    /// # Safety
    /// `w` must address `len` floats of device memory that stay as they are while the copy
    /// is in use (a weight uploaded once).
    pub unsafe fn add_half_weight(&mut self, w: u64, len: usize) -> Result<(), GpuError> {
        let Some(h) = self.half.as_mut() else {
            return Err(GpuError::Unavailable("the FP16 conversion kernel"));
        };
        if h.weights.contains_key(&w) {
            return Ok(());
        }
        let copy = Buf::<u16>::zeros(&self.stream, len)?;
        // SAFETY: the caller vouches for w's len floats; copy holds len halves.
        unsafe { to_f16(&self.stream, &h.to_f16, w, len, copy.ptr()) }?;
        h.weight_bytes += copy.len() * 2;
        h.weights.insert(w, copy);
        Ok(())
    }

    /// Device bytes of the FP16 weight copies and of the FP16 scratch buffer.
    pub fn half_bytes(&self) -> (usize, usize) {
        self.half.as_ref().map_or((0, 0), |h| {
            let scratch = match h.scratch.lock() {
                Ok(g) => g.as_ref().map_or(0, |b| b.len() * 2),
                Err(_) => 0,
            };
            (h.weight_bytes, scratch)
        })
    }

    /// For a [`Math::Fp16`] product whose B operand starts at `b`: B's FP16 copy, and the
    /// address of `a_len` halves of A rounded to FP16 (queued on the stream) in the scratch
    /// buffer. None when B has no FP16 copy.
    ///
    /// # Safety
    /// `a` must address `a_len` floats of device memory.
    unsafe fn half_operands(
        &self,
        a: u64,
        a_len: usize,
        b: u64,
    ) -> Result<Option<(u64, u64)>, GpuError> {
        let Some(h) = self.half.as_ref() else {
            return Ok(None);
        };
        let Some(b16) = h.weights.get(&b) else {
            return Ok(None);
        };
        let mut scratch = h
            .scratch
            .lock()
            .map_err(|_| GpuError::Unavailable("the FP16 scratch buffer (poisoned lock)"))?;
        if scratch.as_ref().is_none_or(|s| s.len() < a_len) {
            // Free the old buffer first (stream-ordered, after the products that read it).
            *scratch = None;
            *scratch = Some(Buf::zeros(&self.stream, a_len)?);
        }
        let Some(a16) = scratch.as_ref().map(Buf::ptr) else {
            return Err(GpuError::Unavailable("the FP16 scratch buffer"));
        };
        // SAFETY: the caller vouches for a's a_len floats; the scratch holds at least a_len.
        unsafe { to_f16(&self.stream, &h.to_f16, a, a_len, a16) }?;
        Ok(Some((a16, b16.ptr())))
    }

    pub fn set_math(&mut self, math: Math) -> Result<(), GpuError> {
        if self.math == Some(math) {
            return Ok(());
        }
        // Fp16's products between FP32 operands are TF32's; its FP16 products use the tensor
        // cores under either mode.
        let mode = match math {
            Math::Fp32 => blas::cublasMath_t::CUBLAS_DEFAULT_MATH,
            Math::Tf32 | Math::Fp16 => blas::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
        };
        // SAFETY: the handle is live for self's lifetime.
        unsafe { blas::cublasSetMathMode(*self.blas.handle(), mode) }.result()?;
        self.math = Some(math);
        Ok(())
    }

    /// Row-major `C[m×n] = alpha · A[m×k] · op(B) + beta · C`, `batch` times with the
    /// operands' strides, where op(B) = Bᵀ for `B[n×k]` (`b_transposed`: a `Linear` weight,
    /// or K in QKᵀ) and B for `B[k×n]` otherwise. Column-major cuBLAS computes Cᵀ = op(B)ᵀ·Aᵀ,
    /// so the operands swap and no weight is transposed.
    ///
    /// # Safety
    /// Every operand must address device memory holding the matrices it describes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: Mat,
        b: Mat,
        b_transposed: bool,
        beta: f32,
        c: Mat,
        batch: usize,
    ) -> Result<(), GpuError> {
        let a_len = extent(a, (m, k), batch);
        let (op_b, [n, m, k]) = swapped(b_transposed, (m, n, k))?;
        let stride = |s: usize| -> Result<i64, GpuError> {
            i64::try_from(s).map_err(|_| GpuError::TooLarge {
                what: "GEMM stride",
                needed: s,
                limit: i64::MAX as usize,
            })
        };
        if self.math == Some(Math::Fp16) {
            // SAFETY: the caller vouches for A's extent.
            if let Some((a16, b16)) = unsafe { self.half_operands(a.ptr, a_len, b.ptr) }? {
                let (f16t, f32t) = (
                    blas::cudaDataType_t::CUDA_R_16F,
                    blas::cudaDataType_t::CUDA_R_32F,
                );
                // SAFETY: the FP16 copies have the FP32 operands' layouts; the handle is
                // live; alpha and beta are f32 as the FP32 compute type requires.
                unsafe {
                    blas::cublasGemmStridedBatchedEx(
                        *self.blas.handle(),
                        op_b,
                        blas::cublasOperation_t::CUBLAS_OP_N,
                        n,
                        m,
                        k,
                        (&alpha as *const f32).cast(),
                        b16 as *const std::ffi::c_void,
                        f16t,
                        int(b.ld)?,
                        stride(b.stride)?,
                        a16 as *const std::ffi::c_void,
                        f16t,
                        int(a.ld)?,
                        stride(a.stride)?,
                        (&beta as *const f32).cast(),
                        c.ptr as *mut std::ffi::c_void,
                        f32t,
                        int(c.ld)?,
                        stride(c.stride)?,
                        int(batch)?,
                        blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
                .result()?;
                return Ok(());
            }
        }
        // SAFETY: the caller vouches for the operands; the handle is live.
        unsafe {
            blas::cublasSgemmStridedBatched(
                *self.blas.handle(),
                op_b,
                blas::cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                &alpha,
                b.ptr as *const f32,
                int(b.ld)?,
                stride(b.stride)?,
                a.ptr as *const f32,
                int(a.ld)?,
                stride(a.stride)?,
                &beta,
                c.ptr as *mut f32,
                int(c.ld)?,
                stride(c.stride)?,
                int(batch)?,
            )
        }
        .result()?;
        Ok(())
    }

    /// A `Linear` layer's product, bias aside: `y[rows×out] = x[rows×inp] · wᵀ` for the
    /// row-major weight `w[out×inp]`, every matrix contiguous.
    ///
    /// # Safety
    /// As [`Blas::gemm`]: x, w and y must hold rows·inp, out·inp and rows·out floats.
    pub unsafe fn linear(
        &self,
        rows: usize,
        out: usize,
        inp: usize,
        x: u64,
        w: u64,
        y: u64,
    ) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the operands.
        unsafe {
            self.gemm(
                (rows, out, inp),
                1.0,
                Mat::new(x, inp),
                Mat::new(w, inp),
                true,
                0.0,
                Mat::new(y, out),
                1,
            )
        }
    }

    /// [`Blas::gemm`] over arrays of operand addresses (device arrays of `batch` addresses
    /// each), for batches whose operands are not evenly strided.
    ///
    /// # Safety
    /// As [`Blas::gemm`], for every address in the arrays.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_arrays(
        &self,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (u64, usize),
        (b, ldb): (u64, usize),
        b_transposed: bool,
        beta: f32,
        (c, ldc): (u64, usize),
        batch: usize,
    ) -> Result<(), GpuError> {
        let (op_b, [n, m, k]) = swapped(b_transposed, (m, n, k))?;
        // SAFETY: the caller vouches for the address arrays; the handle is live.
        unsafe {
            blas::cublasSgemmBatched(
                *self.blas.handle(),
                op_b,
                blas::cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                &alpha,
                b as *const *const f32,
                int(ldb)?,
                a as *const *const f32,
                int(lda)?,
                &beta,
                c as *const *mut f32,
                int(ldc)?,
                int(batch)?,
            )
        }
        .result()?;
        Ok(())
    }
}

/// Queues `y[i] = half(x[i])` for `n` floats of x.
///
/// # Safety
/// `func` must be `f32_to_f16`; x must hold n floats and y n halves.
unsafe fn to_f16(
    s: &Arc<CudaStream>,
    func: &CudaFunction,
    x: u64,
    n: usize,
    y: u64,
) -> Result<(), GpuError> {
    let n64 = n as u64;
    // SAFETY: the caller vouches for the kernel and the buffers.
    unsafe { launch!(s, *func, linear(n)?; x, n64, y) }
}

#[cfg(test)]
mod tests {
    use super::{extent, Mat};

    #[test]
    fn an_operands_extent_ends_at_its_last_element() {
        // One compact matrix.
        assert_eq!(extent(Mat::new(0, 48), (10, 48), 1), 480);
        // A row of a wider buffer.
        assert_eq!(extent(Mat::new(0, 64), (3, 16), 1), 2 * 64 + 16);
        // Batches of compact matrices back to back (the patch embedding's im2col).
        assert_eq!(
            extent(Mat::strided(0, 588, 576 * 588), (576, 588), 16),
            16 * 576 * 588
        );
        // Strided batches with gaps: the last batch's last row ends the span.
        assert_eq!(extent(Mat::strided(0, 8, 100), (2, 4), 3), 200 + 8 + 4);
        assert_eq!(extent(Mat::new(0, 8), (0, 4), 1), 0);
    }
}
