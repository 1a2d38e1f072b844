"""Deconvolution by hand: a convolution as a matrix W, its transpose Wᵀ, unpooling and un-ReLU.

The lecture (CS230, "Interpretability of neural networks") derives the "deconvolution" of Zeiler &
Fergus (2014) in three steps, and this module does each one in NumPy, so that the notebook can check
it against TensorFlow:

1. A convolution is a matrix: ``y = W x`` (``conv1d_matrix``, ``conv2d_matrix``).
2. The transposed convolution is ``Wᵀ y``; the same numbers come from sliding the *flipped* kernel,
   with stride 1, over ``y`` with ``stride - 1`` zeros inserted between its samples
   (``conv1d_transpose`` and ``conv1d_transpose_flipped``; Dumoulin & Visin 2016, section 4).
3. Max pooling is undone with the *switches* it recorded (``max_pool_with_switches``, ``unpool``),
   and the ReLU with one of three backward rules (``relu_backward``, ``deconvnet_relu_backward``,
   ``guided_relu_backward``).

TensorFlow's "convolution" is a cross-correlation: ``y[i] = sum_j kernel[j] * x_padded[i*s + j]``,
with no flip of the kernel. Everything here follows that convention, with ``p`` zeros of padding on
both sides of the input.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from .errors import CourseError

OUTPUT_SIZE_FORMULA = "floor((n + 2p - k)/s) + 1"


# --- output size -----------------------------------------------------------------------------


def _formula(n: int, kernel: int, stride: int, padding: int) -> str:
    """The output-size formula with the numbers filled in, for error messages."""
    filled = f"floor(({n} + 2*{padding} - {kernel})/{stride}) + 1"
    if stride >= 1:
        filled += f" = {(n + 2 * padding - kernel) // stride + 1}"
    return f"{OUTPUT_SIZE_FORMULA} = {filled}"


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Number of outputs of a convolution along one axis: ``floor((n + 2p - k)/s) + 1``.

    The lecture writes ``(nx - f + 2p)/s``; that misses the ``+ 1`` (the first window, at offset
    0, is an output too) and the floor (a last window that would stick out of the padded input is
    dropped). For the lecture's example, n=8, k=4, s=2, p=2: floor(8/2) + 1 = 5 outputs.

    Args:
        n: input length (samples along this axis, before padding).
        kernel: kernel length k.
        stride: step s between windows, at least 1.
        padding: zeros p added on each side, at least 0.

    Returns:
        The output length.

    Raises:
        CourseError: a stride below 1, negative padding, or a kernel longer than the padded input.
    """
    if int(stride) != stride or stride < 1:
        raise CourseError(f"The stride must be a whole number of at least 1; got {stride}. It "
                          f"divides in the output size {_formula(n, kernel, stride, padding)}.")
    if int(padding) != padding or padding < 0:
        raise CourseError(f"The padding must be a whole number of at least 0; got {padding}, in "
                          f"{_formula(n, kernel, stride, padding)}.")
    if kernel < 1 or kernel > n + 2 * padding:
        raise CourseError(f"A kernel of {kernel} taps does not fit in {n} samples padded by "
                          f"{padding} on each side ({n + 2 * padding} in all): "
                          f"{_formula(n, kernel, stride, padding)} leaves no output. Use a "
                          f"shorter kernel or more padding.")
    return (n + 2 * padding - kernel) // stride + 1


def _as_vector(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise CourseError(f"{name} must be a 1D array; got shape {a.shape}. For a single "
                          f"channel, use {name}.ravel() or {name}[0, :, 0].")
    return a


def _as_image(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise CourseError(f"{name} must be a 2D array (height, width), one channel; got shape "
                          f"{a.shape}. From an NHWC tensor take {name}[0, :, :, 0].")
    return a


def _pair(v) -> tuple[int, int]:
    return (v, v) if np.ndim(v) == 0 else tuple(v)


# --- 1D: the matrix W, and its transpose ---------------------------------------------------------


def conv1d_matrix(kernel, n_in: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    r"""The matrix W of a 1D convolution, so that ``y = W @ x`` equals ``tf.nn.conv1d``.

    Output ``i`` looks at the padded input from position ``i*stride``; tap ``j`` of the kernel
    lands on input sample ``i*stride + j - padding``. Taps that land on the padding meet a zero
    and leave no entry in W, so W has only ``n_in`` columns.

    Args:
        kernel: the k filter weights, shape (k,), not flipped (TensorFlow's convention).
        n_in: input length n.
        stride: s, at least 1.
        padding: p zeros on each side of the input.

    Returns:
        W, shape (n_out, n_in) with :math:`n_\text{out} = \lfloor (n + 2p - k)/s \rfloor + 1`.
    """
    kernel = _as_vector(kernel, "kernel")
    n_out = conv_output_size(n_in, kernel.size, stride, padding)
    W = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j, w in enumerate(kernel):
            col = i * stride + j - padding
            if 0 <= col < n_in:
                W[i, col] = w
    return W


def conv1d(x, kernel, stride: int = 1, padding: int = 0) -> np.ndarray:
    """A 1D convolution (cross-correlation, as in TensorFlow) computed as ``W @ x``.

    Args:
        x: input, shape (n,).
        kernel: weights, shape (k,).

    Returns:
        y, shape (floor((n + 2p - k)/s) + 1,).
    """
    x = _as_vector(x, "x")
    return conv1d_matrix(kernel, x.size, stride, padding) @ x


def _check_output_length(y: np.ndarray, n_in: int, kernel: int, stride: int, padding: int):
    n_out = conv_output_size(n_in, kernel, stride, padding)
    if y.shape[0] != n_out:
        raise CourseError(f"y has {y.shape[0]} samples, but a convolution of {n_in} samples with "
                          f"k={kernel}, s={stride}, p={padding} gives "
                          f"{_formula(n_in, kernel, stride, padding)}. Pass the y that this "
                          f"convolution made, or check n_in, stride and padding.")


def conv1d_transpose(y, kernel, n_in: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """The transposed convolution ("deconvolution") as ``Wᵀ @ y``, as ``tf.nn.conv1d_transpose``.

    Several input lengths give the same output length when ``stride > 1``, so the length of the
    forward input must be given.

    Args:
        y: signal in the output space of the convolution, shape (n_out,).
        kernel: the forward convolution's weights, shape (k,).
        n_in: length n of the forward convolution's input: the length of the result.

    Returns:
        Wᵀ y, shape (n_in,).
    """
    y, kernel = _as_vector(y, "y"), _as_vector(kernel, "kernel")
    _check_output_length(y, n_in, kernel.size, stride, padding)
    return conv1d_matrix(kernel, n_in, stride, padding).T @ y


def insert_zeros(y, stride: int) -> np.ndarray:
    """Put ``stride - 1`` zeros between neighbouring samples of ``y`` (along every axis).

    Args:
        y: shape (m,) or (m1, m2).

    Returns:
        shape ((m - 1)*stride + 1,) per axis: y at every stride-th position, zeros between.
    """
    y = np.asarray(y, dtype=np.float64)
    strides = [stride] * y.ndim if np.ndim(stride) == 0 else list(stride)
    z = np.zeros([(m - 1) * s + 1 for m, s in zip(y.shape, strides, strict=True)])
    z[tuple(slice(None, None, s) for s in strides)] = y
    return z


def conv1d_transpose_flipped(y, kernel, n_in: int, stride: int = 1,
                             padding: int = 0) -> np.ndarray:
    """The transposed convolution as a stride-1 convolution with the flipped kernel.

    The "sub-pixel" (fractionally strided) view of the lecture and of Dumoulin & Visin (2016):
    insert ``stride - 1`` zeros between the samples of y, pad with ``k - 1 - p`` zeros on each
    side, and slide the flipped kernel over it one sample at a time. The result equals
    ``conv1d_transpose`` (that is, ``Wᵀ @ y``).

    Args:
        y: shape (n_out,).
        kernel: the forward convolution's weights, shape (k,), not flipped.
        n_in: length of the forward input, that of the result.

    Returns:
        shape (n_in,).
    """
    y, kernel = _as_vector(y, "y"), _as_vector(kernel, "kernel")
    _check_output_length(y, n_in, kernel.size, stride, padding)
    k = kernel.size
    z = insert_zeros(y, stride)
    leftover = (n_in + 2 * padding - k) % stride  # input samples the last window did not reach
    z = np.pad(z, (k - 1, k - 1 + leftover))      # pad k-1 now, remove p below: k-1-p in all
    flipped = kernel[::-1]
    full = np.array([z[i:i + k] @ flipped for i in range(z.size - k + 1)])
    return full[padding:padding + n_in]


# --- 2D: one channel -------------------------------------------------------------------------


def conv2d_matrix(kernel, input_shape: tuple[int, int], stride=1, padding=0) -> np.ndarray:
    """The matrix W of a single-channel 2D convolution: ``W @ x.ravel()`` equals ``tf.nn.conv2d``.

    Images are flattened row by row (NumPy's ``ravel``), so row ``i*w_out + j`` of W is output
    pixel (i, j), and column ``r*w + c`` is input pixel (r, c).

    Args:
        kernel: weights, shape (kh, kw), not flipped.
        input_shape: (h, w) of the input.
        stride: one int, or (s_rows, s_cols).
        padding: zeros on each side, one int or (p_rows, p_cols).

    Returns:
        W, shape (h_out * w_out, h * w).
    """
    kernel = _as_image(kernel, "kernel")
    (h, w), (sh, sw), (ph, pw) = input_shape, _pair(stride), _pair(padding)
    h_out = conv_output_size(h, kernel.shape[0], sh, ph)
    w_out = conv_output_size(w, kernel.shape[1], sw, pw)
    W = np.zeros((h_out, w_out, h, w))
    for i in range(h_out):
        for j in range(w_out):
            for (a, b), weight in np.ndenumerate(kernel):
                r, c = i * sh + a - ph, j * sw + b - pw
                if 0 <= r < h and 0 <= c < w:
                    W[i, j, r, c] = weight
    return W.reshape(h_out * w_out, h * w)


def conv2d(x, kernel, stride=1, padding=0) -> np.ndarray:
    """A single-channel 2D convolution computed as ``W @ x.ravel()``.

    Args:
        x: shape (h, w).
        kernel: shape (kh, kw).

    Returns:
        y, shape (h_out, w_out), each size given by floor((n + 2p - k)/s) + 1.
    """
    x = _as_image(x, "x")
    W = conv2d_matrix(kernel, x.shape, stride, padding)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    kh, kw = np.shape(kernel)
    return (W @ x.ravel()).reshape(conv_output_size(x.shape[0], kh, sh, ph),
                                   conv_output_size(x.shape[1], kw, sw, pw))


def _check_output_shape(y: np.ndarray, input_shape, kernel_shape, stride, padding):
    for axis, name in enumerate(("height", "width")):
        n, k, s, p = (input_shape[axis], kernel_shape[axis], _pair(stride)[axis],
                      _pair(padding)[axis])
        if y.shape[axis] != conv_output_size(n, k, s, p):
            raise CourseError(f"y has {name} {y.shape[axis]}, but the convolution of a "
                              f"{input_shape[0]}×{input_shape[1]} input gives {name} "
                              f"{_formula(n, k, s, p)}. Check input_shape, stride and padding.")


def conv2d_transpose(y, kernel, input_shape: tuple[int, int], stride=1,
                     padding=0) -> np.ndarray:
    """The single-channel 2D transposed convolution as ``Wᵀ @ y.ravel()``.

    Equals ``tf.nn.conv2d_transpose`` with ``output_shape`` = the forward input's shape, and
    ``keras.layers.Conv2DTranspose`` whose ``output_padding`` restores that shape.

    Args:
        y: shape (h_out, w_out).
        kernel: the forward weights, shape (kh, kw).
        input_shape: (h, w) of the forward input, the shape of the result.

    Returns:
        shape (h, w).
    """
    y, kernel = _as_image(y, "y"), _as_image(kernel, "kernel")
    _check_output_shape(y, input_shape, kernel.shape, stride, padding)
    W = conv2d_matrix(kernel, input_shape, stride, padding)
    return (W.T @ y.ravel()).reshape(input_shape)


def conv2d_transpose_flipped(y, kernel, input_shape: tuple[int, int], stride=1,
                             padding=0) -> np.ndarray:
    """The 2D transposed convolution as a stride-1 convolution of the zero-inserted y with the
    kernel flipped upside down and left to right (see ``conv1d_transpose_flipped``).

    Returns:
        shape (h, w), equal to ``conv2d_transpose``.
    """
    y, kernel = _as_image(y, "y"), _as_image(kernel, "kernel")
    _check_output_shape(y, input_shape, kernel.shape, stride, padding)
    (sh, sw), (ph, pw), (kh, kw) = _pair(stride), _pair(padding), kernel.shape
    left_h = (input_shape[0] + 2 * ph - kh) % sh
    left_w = (input_shape[1] + 2 * pw - kw) % sw
    z = np.pad(insert_zeros(y, (sh, sw)), ((kh - 1, kh - 1 + left_h), (kw - 1, kw - 1 + left_w)))
    flipped = kernel[::-1, ::-1]
    windows = np.lib.stride_tricks.sliding_window_view(z, kernel.shape)
    full = np.einsum("ijab,ab->ij", windows, flipped)
    return full[ph:ph + input_shape[0], pw:pw + input_shape[1]]


def conv2d_transpose_subpixel(y, kernel, input_shape: tuple[int, int], stride: int = 1,
                              padding: int = 0) -> np.ndarray:
    """The 2D transposed convolution as Shi et al.'s (2016) *sub-pixel convolution*: no zeros.

    In the zero-inserted view, output pixel (i, j) only ever meets the kernel taps of its own
    *phase* (i mod s, j mod s); every other tap lands on an inserted zero. So split the kernel
    into s² sub-kernels, ``kernel[a::s, b::s]`` for phase (a, b); convolve y with each one,
    flipped, at y's own low resolution, stride 1 (one output channel per phase); then interleave
    the s² channels into an s-times larger image, the "pixel shuffle", ``tf.nn.depth_to_space``.
    Same numbers as ``conv2d_transpose``, without a multiplication by an inserted zero.

    Args:
        y: shape (h_out, w_out).
        kernel: the forward weights, shape (kh, kw).
        input_shape: (h, w) of the forward input, the shape of the result.
        stride, padding: of the forward convolution (one int each: the same on both axes).

    Returns:
        shape (h, w), equal to ``conv2d_transpose``.
    """
    y, kernel = _as_image(y, "y"), _as_image(kernel, "kernel")
    if np.ndim(stride) or np.ndim(padding):
        raise CourseError("conv2d_transpose_subpixel takes one stride and one padding for both "
                          "axes; for different ones use conv2d_transpose_flipped.")
    _check_output_shape(y, input_shape, kernel.shape, stride, padding)
    s, (kh, kw) = stride, kernel.shape
    th, tw = -(-kh // s), -(-kw // s)                           # taps per phase, rounded up
    padded = np.zeros((th * s, tw * s))
    padded[:kh, :kw] = kernel                                    # a zero tap where none exists
    sub = np.stack([padded[a::s, b::s][::-1, ::-1] for a in range(s) for b in range(s)], -1)
    low = np.pad(y, ((th - 1, th - 1), (tw - 1, tw - 1)))        # every phase's full output
    phases = tf.nn.conv2d(low[None, :, :, None], sub[:, :, None, :], 1, "VALID")   # (1, ., ., s²)
    if s > 1:
        phases = tf.nn.depth_to_space(phases, s)                 # the pixel shuffle
    full = phases[0, :, :, 0].numpy()
    full = np.pad(full, ((0, max(0, input_shape[0] + 2 * padding - full.shape[0])),
                         (0, max(0, input_shape[1] + 2 * padding - full.shape[1]))))
    return full[padding:padding + input_shape[0], padding:padding + input_shape[1]]


# --- unpooling with switches -----------------------------------------------------------------


def max_pool_with_switches(x, size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling that also records where each maximum came from (Zeiler & Fergus's switches).

    Uses ``tf.nn.max_pool_with_argmax`` with non-overlapping ``size``×``size`` windows.

    Args:
        x: a batch, shape (N, H, W, C).
        size: window side and stride.

    Returns:
        (pooled, switches): both shape (N, H//size, W//size, C); ``switches`` holds, for each
        pooled value, the index of its maximum in ``x.ravel()``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise CourseError(f"x must be a batch (N, H, W, C); got shape {x.shape}. For one "
                          "single-channel image use x[None, :, :, None].")
    if size < 1 or size > min(x.shape[1:3]):
        raise CourseError(f"A {size}×{size} pooling window does not fit in a {x.shape[1]}×"
                          f"{x.shape[2]} image: {_formula(min(x.shape[1:3]), size, size, 0)}.")
    pooled, switches = tf.nn.max_pool_with_argmax(x, size, size, "VALID",
                                                  include_batch_in_index=True)
    return pooled.numpy(), switches.numpy()


def unpool(y, switches, input_shape: tuple[int, ...]) -> np.ndarray:
    """Undo max pooling: each value goes back to the position of its switch, zeros elsewhere.

    This is also the gradient of max pooling. If two values share a switch (overlapping
    windows), they are added.

    Args:
        y: pooled values (or a signal of the same shape), shape (N, h, w, C).
        switches: from ``max_pool_with_switches``, the same shape as y.
        input_shape: (N, H, W, C) of the input to the pooling.

    Returns:
        shape ``input_shape``.
    """
    y, switches = np.asarray(y), np.asarray(switches)
    if y.shape != switches.shape:
        raise CourseError(f"y and switches must have the same shape; got {y.shape} and "
                          f"{switches.shape}. Unpool the pooled output with its own switches.")
    size = int(np.prod(input_shape))
    if switches.size and (switches.min() < 0 or switches.max() >= size):
        raise CourseError(f"A switch points outside an input of shape {tuple(input_shape)} "
                          f"({size} values); pass the input_shape of the pooling's input.")
    out = np.zeros(size, dtype=y.dtype)
    np.add.at(out, switches.ravel(), y.ravel())
    return out.reshape(input_shape)


# --- the three backward rules through a ReLU -------------------------------------------------


def _check_same_shape(grad, x) -> tuple[np.ndarray, np.ndarray]:
    grad, x = np.asarray(grad), np.asarray(x)
    if grad.shape != x.shape:
        raise CourseError(f"The backward signal and the ReLU's forward input must have the same "
                          f"shape; got {grad.shape} and {x.shape}.")
    return grad, x


def relu_backward(grad, x) -> np.ndarray:
    """Backpropagation through a ReLU: pass the signal where the forward input was positive.

    Args:
        grad: the signal coming back from above, any shape.
        x: the ReLU's forward input, same shape.

    Returns:
        ``grad`` where ``x > 0``, else 0.
    """
    grad, x = _check_same_shape(grad, x)
    return np.where(x > 0, grad, 0.0)


def deconvnet_relu_backward(grad, x) -> np.ndarray:
    """Zeiler & Fergus's "un-ReLU": pass the signal where the *signal* is positive.

    The forward input is ignored; the rule is a ReLU applied to the backward signal
    (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks").

    Args:
        grad: the signal coming back from above, any shape.
        x: the ReLU's forward input (unused; here so the three rules are called alike).

    Returns:
        ``grad`` where ``grad > 0``, else 0: ``max(grad, 0)``.
    """
    grad, x = _check_same_shape(grad, x)
    return np.where(grad > 0, grad, 0.0)


def guided_relu_backward(grad, x) -> np.ndarray:
    """Guided backpropagation: pass the signal only where both it and the forward input are
    positive (Springenberg et al. 2015, "Striving for simplicity").

    Returns:
        ``grad`` where both ``x > 0`` and ``grad > 0``, else 0.
    """
    grad, x = _check_same_shape(grad, x)
    return np.where((x > 0) & (grad > 0), grad, 0.0)


# --- for the notebook ------------------------------------------------------------------------


def print_largest_error(a, b, label: str, tol: float = 1e-5) -> None:
    """Print the largest :math:`|a - b|`, in words that are the same on every machine.

    Round-off (below ``tol``) is reported as agreement, not as a number that would change with
    the CPU or library version; a real difference is printed to one significant digit.
    """
    err = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
    verdict = f"< {tol:.0e}: they agree" if err < tol else f"{err:.0e}: they differ"
    print(f"{label}: largest error {verdict}")


def draw_matrix(M, ax=None, title: str | None = None, *, xlabel: str = "input sample",
                ylabel: str = "output sample", fmt: str = "{:g}"):
    """Draw a small matrix with its values written in the cells.

    Zeros (and round-off below a millionth of the largest value) are left blank, and so are NaN
    cells, which are not drawn at all.

    Returns:
        The axes.
    """
    M = np.asarray(M, dtype=np.float64)
    ax = ax or plt.gca()
    peak = np.nanmax(np.abs(M)) or 1.0
    ax.imshow(M, cmap="RdBu_r", vmin=-peak, vmax=peak)
    for (r, c), v in np.ndenumerate(M):
        if np.isfinite(v) and abs(v) > 1e-6 * peak:
            colour = "white" if abs(v) > 0.6 * peak else "black"
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(M.shape[1]))
    ax.set_yticks(range(M.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


# --- exercise --------------------------------------------------------------------------------

_EXERCISE = {"kernel": [1.0, 2.0, -1.0], "n_in": 6, "stride": 2, "padding": 1}


def check_conv_matrix_exercise(answer) -> None:
    """Check the notebook's exercise: W for kernel [1, 2, -1], stride 2, padding 1, 6 inputs.

    Prints "correct", or "not yet: ..." with a hint.
    """
    kernel, n, s, p = (_EXERCISE[key] for key in ("kernel", "n_in", "stride", "padding"))
    expected = conv1d_matrix(kernel, n, s, p)
    if answer is None:
        print("not yet: W_student is still None. Build a NumPy array with one row per output "
              "and one column per input sample.")
        return
    W = np.asarray(answer, dtype=np.float64)
    if W.shape != expected.shape:
        print(f"not yet: W should have shape {expected.shape} (outputs × inputs), with "
              f"{_formula(n, len(kernel), s, p)} outputs; yours has shape {W.shape}.")
    elif np.allclose(W, expected):
        print("correct")
    elif np.allclose(W, conv1d_matrix(kernel[::-1], n, s, p)):
        print("not yet: your rows hold the kernel reversed. TensorFlow's convolution does not "
              "flip it: row i is [1, 2, -1] starting at input sample i*2 - 1.")
    else:
        rows = [i for i in range(W.shape[0]) if not np.allclose(W[i], expected[i])]
        print(f"not yet: row {rows[0]} is wrong. Output i starts at padded position i*2, that is "
              f"input sample i*2 - 1; taps that fall on the padding (index -1 or {n}) are "
              "dropped.")


# --- the transposed convolution, drawn: a figure and its sliders ------------------------------


def draw_transpose(kernel_size: int = 4, stride: int = 2, padding: int = 2, n_in: int = 8):
    """W, Wᵀ and the zero-inserted view of one 1D convolution, in one figure.

    The kernel is [1, 2, ..., k] (every tap tells which one it is), y is [1, 2, ..., n_out].
    Top: W (n_out × n_in) and Wᵀ. Bottom: y with s - 1 zeros inserted between its samples and
    k - 1 - p zeros of padding, the flipped kernel, and Wᵀ y (with extra zeros on the right
    where the forward windows never reached the last samples). Returns the figure.
    """
    kernel = np.arange(1.0, kernel_size + 1)
    n_out = conv_output_size(n_in, kernel_size, stride, padding)  # CourseError if it does not fit
    W = conv1d_matrix(kernel, n_in, stride, padding)
    y = np.arange(1.0, n_out + 1)
    front = kernel_size - 1 - padding
    leftover = (n_in + 2 * padding - kernel_size) % stride
    z = insert_zeros(y, stride)
    fig = plt.figure(figsize=(10, 5.6))
    grid = fig.add_gridspec(3, 2, height_ratios=[3, 0.7, 0.7])
    draw_matrix(W, fig.add_subplot(grid[0, 0]), f"W: {n_out} × {n_in} (k={kernel_size}, "
                f"s={stride}, p={padding})", fmt="{:.0f}")
    draw_matrix(W.T, fig.add_subplot(grid[0, 1]), f"Wᵀ: {n_in} × {n_out}", xlabel="output sample",
                ylabel="input sample", fmt="{:.0f}")
    ax = fig.add_subplot(grid[1, :])
    if front >= 0:
        shown = np.pad(z, (front, front + leftover))
        title = (f"y with s - 1 = {stride - 1} zeros between samples, padded by k - 1 - p = "
                 f"{front} (+ {leftover} on the right)\nslide the flipped kernel "
                 f"{kernel[::-1].astype(int).tolist()} over it")
    else:  # more padding than k - 1: the first outputs are cropped instead
        shown = z
        title = f"y with {stride - 1} zeros between samples; k - 1 - p < 0: crop {-front} instead"
    draw_matrix(shown[None, :], ax, title, xlabel="", ylabel="", fmt="{:.0f}")
    ax.set_yticks([])
    ax = fig.add_subplot(grid[2, :])
    draw_matrix((W.T @ y)[None, :], ax, "Wᵀ y: the flipped kernel slid over the row above, "
                "stride 1", xlabel="input sample", ylabel="", fmt="{:.0f}")
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def transpose_panel():
    """Sliders for k, s, p and n over :func:`draw_transpose` (ipywidgets 7.7 or 8).

    The figure is shown as a picture that each slider move replaces; a setting that does not fit
    (n + 2p < k) shows the reason instead. Returns the panel (a VBox); display it.
    """
    import ipywidgets as w

    from .plotting import figure_png

    slider = {"continuous_update": False}
    sliders = {"kernel_size": w.IntSlider(4, 1, 6, description="k", **slider),
               "stride": w.IntSlider(2, 1, 3, description="s", **slider),
               "padding": w.IntSlider(2, 0, 3, description="p", **slider),
               "n_in": w.IntSlider(8, 3, 12, description="n", **slider)}
    picture, message = w.Image(format="png"), w.HTML()

    def update(change=None):
        try:
            fig = draw_transpose(**{name: s.value for name, s in sliders.items()})
        except CourseError as error:
            message.value = f"<b>{error}</b>"
            return
        picture.value, message.value = figure_png(fig), ""
        plt.close(fig)

    for s in sliders.values():
        s.observe(update, names="value")
    update()
    return w.VBox([w.HBox(list(sliders.values())), message, picture])


_TRANSPOSE_CASES = [(4, 2, 2, 8), (3, 2, 1, 6), (3, 3, 0, 9), (5, 2, 1, 10), (3, 2, 0, 8),
                    (2, 1, 0, 5)]  # (k, s, p, n): the lecture's, then strides 1-3, paddings 0-2


def check_transpose_exercise(my_transpose) -> None:
    """Check ``my_transpose(y, kernel, stride, padding, n_in)`` against Wᵀ y on six cases.

    The cases cover strides 1 to 3, paddings 0 to 2, and lengths where the forward windows
    missed the last input samples. Prints "correct", or "not yet: ..." with a hint.
    """
    for k, s, p, n in _TRANSPOSE_CASES:
        kernel = np.arange(1.0, k + 1)
        y = np.arange(1.0, conv_output_size(n, k, s, p) + 1)
        expected = conv1d_matrix(kernel, n, s, p).T @ y
        case = f"k={k}, s={s}, p={p}, n={n} (kernel {kernel.astype(int).tolist()}, " \
               f"y {y.astype(int).tolist()})"
        try:
            got = my_transpose(y.copy(), kernel.copy(), s, p, n)
        except Exception as error:  # noqa: BLE001  (any error: the student's function failed)
            print(f"not yet: your function raised {type(error).__name__}: {error}, on {case}.")
            return
        if got is None:
            print("not yet: your function returns None. Insert the zeros, pad, slide the "
                  "flipped kernel, then crop.")
            return
        got = np.asarray(got, dtype=np.float64).ravel()
        if got.shape != expected.shape:
            print(f"not yet: on {case} your result has {got.size} samples; Wᵀ y has n = {n}, "
                  "the forward input's length. After the stride-1 convolution drop p samples "
                  "at each end (the padding); and when (n + 2p - k) is not a multiple of s, the "
                  "forward windows never reached the last samples: they get zeros.")
            return
        if np.allclose(got, expected):
            continue
        if np.allclose(got, conv1d_matrix(kernel[::-1], n, s, p).T @ y):
            print(f"not yet: on {case} your result is what the kernel gives *unflipped*. In the "
                  "sliding view the kernel runs backwards: flip it.")
        elif s > 1 and np.allclose(got[::s], expected[::s]):
            print(f"not yet: on {case} every {s}-th sample is right and the ones between are "
                  f"not: check the zeros between the samples of y (s - 1 = {s - 1} of them).")
        else:
            print(f"not yet: on {case} Wᵀ y is {np.round(expected, 3).tolist()}; yours is "
                  f"{np.round(got, 3).tolist()}. Count the zeros again: s - 1 between the "
                  "samples of y, then k - 1 - p at each end.")
        return
    print(f"correct: your function equals Wᵀ y on all {len(_TRANSPOSE_CASES)} cases")
