"""Deconvolution by hand (course_utils.deconv) against TensorFlow's own ops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from course_utils import CourseError, deconv

STRIDES_AND_PADDINGS = [(s, p) for s in (1, 2, 3) for p in (0, 1, 2)]
TOL = dict(rtol=1e-5, atol=1e-5)  # float32 round-off on sums of a few dozen terms


def _lengths(stride, padding):
    """(n, k) pairs that fit, including kernels longer than the unpadded input."""
    return [(n, k) for n in (2, 5, 8, 11) for k in (1, 2, 3, 4, 5) if k <= n + 2 * padding]


def _tf_conv1d(x, kernel, stride, padding):
    x = np.pad(x, padding)[None, :, None].astype(np.float32)
    return tf.nn.conv1d(x, kernel[:, None, None].astype(np.float32), stride, "VALID")[0, :, 0]


def _tf_conv1d_transpose(y, kernel, n, stride, padding):
    """Transpose of the VALID conv of the padded input, then drop the padding: (W P)ᵀ = Pᵀ Wᵀ."""
    out = tf.nn.conv1d_transpose(y[None, :, None].astype(np.float32),
                                 kernel[:, None, None].astype(np.float32),
                                 (1, n + 2 * padding, 1), stride, "VALID")[0, :, 0]
    return out.numpy()[padding:padding + n]


# --- the output size ---------------------------------------------------------------------------


def test_output_size_of_the_lecture_example_is_5_not_4():
    assert deconv.conv_output_size(8, 4, stride=2, padding=2) == 5


@pytest.mark.parametrize("stride,padding", STRIDES_AND_PADDINGS)
def test_output_size_is_the_length_tf_gives(stride, padding):
    for n, k in _lengths(stride, padding):
        y = _tf_conv1d(np.ones(n), np.ones(k), stride, padding)
        assert deconv.conv_output_size(n, k, stride, padding) == y.shape[0]


# --- 1D ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,padding", STRIDES_AND_PADDINGS)
def test_conv1d_matrix_and_its_transpose_match_tensorflow(stride, padding):
    rng = np.random.default_rng(10 * stride + padding)
    for n, k in _lengths(stride, padding):
        kernel, x = rng.normal(size=k), rng.normal(size=n)
        W = deconv.conv1d_matrix(kernel, n, stride, padding)
        np.testing.assert_allclose(W @ x, _tf_conv1d(x, kernel, stride, padding), **TOL)
        y = rng.normal(size=W.shape[0])
        expected = _tf_conv1d_transpose(y, kernel, n, stride, padding)
        np.testing.assert_allclose(W.T @ y, expected, **TOL)
        np.testing.assert_allclose(deconv.conv1d_transpose(y, kernel, n, stride, padding),
                                   expected, **TOL)


@pytest.mark.parametrize("stride,padding", STRIDES_AND_PADDINGS)
def test_flipped_kernel_on_zero_inserted_input_equals_w_transpose(stride, padding):
    rng = np.random.default_rng(100 + 10 * stride + padding)
    for n, k in _lengths(stride, padding):
        kernel = rng.normal(size=k)
        y = rng.normal(size=deconv.conv_output_size(n, k, stride, padding))
        np.testing.assert_allclose(
            deconv.conv1d_transpose_flipped(y, kernel, n, stride, padding),
            deconv.conv1d_matrix(kernel, n, stride, padding).T @ y, rtol=1e-12, atol=1e-12)


def test_conv1d_is_w_times_x_and_keras_conv1d_transpose_is_w_transpose():
    rng = np.random.default_rng(7)
    kernel, x = rng.normal(size=4), rng.normal(size=8)
    y = deconv.conv1d(x, kernel, stride=2, padding=2)
    np.testing.assert_allclose(y, _tf_conv1d(x, kernel, 2, 2), **TOL)
    layer = keras.layers.Conv1DTranspose(1, 4, strides=2, padding="valid", output_padding=0,
                                         use_bias=False)
    layer.build((1, 5, 1))
    layer.set_weights([kernel[:, None, None]])
    out = layer(y[None, :, None].astype(np.float32)).numpy()[0, 2:10, 0]
    np.testing.assert_allclose(deconv.conv1d_transpose(y, kernel, 8, 2, 2), out, **TOL)


def test_insert_zeros_puts_stride_minus_one_zeros_between_samples():
    assert deconv.insert_zeros([1, 2, 3], 2).tolist() == [1, 0, 2, 0, 3]
    assert deconv.insert_zeros([1, 2], 3).tolist() == [1, 0, 0, 2]
    assert deconv.insert_zeros([[1, 2], [3, 4]], 2).tolist() == [[1, 0, 2], [0, 0, 0],
                                                                 [3, 0, 4]]


# --- 2D ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,padding", STRIDES_AND_PADDINGS + [((2, 1), (0, 2))])
def test_conv2d_matrix_and_its_transpose_match_tensorflow_and_keras(stride, padding):
    rng = np.random.default_rng(200 + 10 * np.sum(stride) + np.sum(padding))
    (sh, sw), (ph, pw) = deconv._pair(stride), deconv._pair(padding)
    h, w = 7, 6
    kernel = rng.normal(size=(3, 4)).astype(np.float32)
    x = rng.normal(size=(h, w)).astype(np.float32)
    k4 = kernel[:, :, None, None]

    y = deconv.conv2d(x, kernel, stride, padding)
    x_pad = np.pad(x, ((ph, ph), (pw, pw)))[None, :, :, None]
    np.testing.assert_allclose(y, tf.nn.conv2d(x_pad, k4, (sh, sw), "VALID")[0, :, :, 0], **TOL)

    g = rng.normal(size=y.shape).astype(np.float32)
    ours = deconv.conv2d_transpose(g, kernel, (h, w), stride, padding)
    explicit = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
    tf_out = tf.nn.conv2d_transpose(g[None, :, :, None], k4, (1, h, w, 1), (sh, sw), explicit)
    np.testing.assert_allclose(ours, tf_out[0, :, :, 0], **TOL)

    # Keras has no explicit padding: transpose the VALID conv of the padded input, then crop.
    leftover = ((h + 2 * ph - 3) % sh, (w + 2 * pw - 4) % sw)
    layer = keras.layers.Conv2DTranspose(1, (3, 4), strides=(sh, sw), padding="valid",
                                         output_padding=leftover, use_bias=False)
    layer.build((1, *y.shape, 1))
    layer.set_weights([k4])
    keras_out = layer(g[None, :, :, None]).numpy()[0, ph:ph + h, pw:pw + w, 0]
    np.testing.assert_allclose(ours, keras_out, **TOL)

    flipped = deconv.conv2d_transpose_flipped(g, kernel, (h, w), stride, padding)
    np.testing.assert_allclose(flipped, ours, rtol=1e-9, atol=1e-9)


def test_conv2d_matrix_rows_are_output_pixels_and_columns_input_pixels():
    W = deconv.conv2d_matrix(np.arange(1, 10).reshape(3, 3), (4, 4))
    assert W.shape == (4, 16)
    assert W[0].reshape(4, 4)[:3, :3].tolist() == np.arange(1, 10).reshape(3, 3).tolist()
    assert W[3].reshape(4, 4)[1:, 1:].tolist() == np.arange(1, 10).reshape(3, 3).tolist()


# --- unpooling with switches ---------------------------------------------------------------------


def test_unpool_puts_each_value_back_at_its_switch_and_zeros_elsewhere():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
    pooled, switches = deconv.max_pool_with_switches(x, size=2)
    assert pooled.shape == switches.shape == (2, 3, 4, 3)
    out = deconv.unpool(pooled, switches, x.shape)

    flat = out.ravel()
    np.testing.assert_array_equal(flat[switches.ravel()], pooled.ravel())
    np.testing.assert_array_equal(np.delete(flat, switches.ravel()), 0)
    np.testing.assert_array_equal(flat[switches.ravel()], x.ravel()[switches.ravel()])

    # each switch lies in its own 2×2 window, same image and channel
    b, r, c, ch = np.unravel_index(switches, x.shape)
    n_idx, i_idx, j_idx, ch_idx = np.indices(pooled.shape)
    assert (b == n_idx).all() and (ch == ch_idx).all()
    assert (r // 2 == i_idx).all() and (c // 2 == j_idx).all()


def test_unpool_is_the_gradient_of_max_pooling():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(1, 4, 6, 2)).astype(np.float32))
    signal = rng.normal(size=(1, 2, 3, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pooled = tf.nn.max_pool2d(x, 2, 2, "VALID")
    grad = tape.gradient(pooled, x, output_gradients=tf.constant(signal))
    _, switches = deconv.max_pool_with_switches(x.numpy())
    np.testing.assert_allclose(deconv.unpool(signal, switches, x.shape), grad.numpy(), **TOL)


# --- ReLU backward rules -----------------------------------------------------------------------

X = np.array([3.0, -1.0, 2.0, -4.0, 1.0, -2.0, 0.0])   # the ReLU's forward input
G = np.array([1.0, 2.0, -3.0, -1.0, -2.0, 4.0, 5.0])   # the signal coming back


def test_backprop_passes_where_the_forward_input_was_positive():
    assert deconv.relu_backward(G, X).tolist() == [1, 0, -3, 0, -2, 0, 0]
    with tf.GradientTape() as tape:
        x = tf.constant(X)
        tape.watch(x)
        out = tf.reduce_sum(tf.nn.relu(x) * G)
    np.testing.assert_array_equal(deconv.relu_backward(G, X), tape.gradient(out, x).numpy())


def test_deconvnet_passes_where_the_signal_is_positive():
    assert deconv.deconvnet_relu_backward(G, X).tolist() == [1, 2, 0, 0, 0, 4, 5]
    np.testing.assert_array_equal(deconv.deconvnet_relu_backward(G, -X), tf.nn.relu(G))


def test_guided_passes_where_both_are_positive():
    assert deconv.guided_relu_backward(G, X).tolist() == [1, 0, 0, 0, 0, 0, 0]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call,numbers", [
    (lambda: deconv.conv_output_size(1, 4, 2, 1), "floor((1 + 2*1 - 4)/2) + 1 = 0"),
    (lambda: deconv.conv1d_matrix([1, 2, 3, 4], 2, 1, 0), "floor((2 + 2*0 - 4)/1) + 1 = -1"),
    (lambda: deconv.conv1d_matrix([1, 2, 3, 4], 8, 0, 2), "floor((8 + 2*2 - 4)/0) + 1"),
    (lambda: deconv.conv1d_matrix([1, 2, 3, 4], 8, 2, -1), "floor((8 + 2*-1 - 4)/2) + 1"),
    (lambda: deconv.conv1d_transpose(np.ones(4), [1, 2, 3, 4], 8, 2, 2),
     "floor((8 + 2*2 - 4)/2) + 1 = 5"),
    (lambda: deconv.conv1d_transpose_flipped(np.ones(6), [1, 2, 3, 4], 8, 2, 2),
     "floor((8 + 2*2 - 4)/2) + 1 = 5"),
    (lambda: deconv.conv2d_transpose(np.ones((3, 2)), np.ones((3, 3)), (5, 5), 2, 1),
     "floor((5 + 2*1 - 3)/2) + 1 = 3"),
    (lambda: deconv.conv2d_matrix(np.ones((6, 3)), (3, 3), 1, 1), "floor((3 + 2*1 - 6)/1) + 1"),
    (lambda: deconv.max_pool_with_switches(np.ones((1, 1, 4, 1)), 2), "floor((1 + 2*0 - 2)/2)"),
])
def test_bad_sizes_raise_a_course_error_with_the_formula_filled_in(call, numbers):
    with pytest.raises(CourseError) as info:
        call()
    assert "floor((n + 2p - k)/s) + 1" in str(info.value)
    assert numbers in str(info.value)


@pytest.mark.parametrize("call,words", [
    (lambda: deconv.conv1d_matrix(np.ones((2, 2)), 8), "1D array"),
    (lambda: deconv.conv2d(np.ones(5), np.ones((2, 2))), "2D array"),
    (lambda: deconv.max_pool_with_switches(np.ones((4, 4))), "x[None, :, :, None]"),
    (lambda: deconv.unpool(np.ones((1, 2, 2, 1)), np.zeros((1, 2, 1, 1), int), (1, 4, 4, 1)),
     "same shape"),
    (lambda: deconv.unpool(np.ones((1, 1, 1, 1)), np.full((1, 1, 1, 1), 99), (1, 2, 2, 1)),
     "input_shape"),
    (lambda: deconv.relu_backward(np.ones(3), np.ones(4)), "same shape"),
    (lambda: deconv.guided_relu_backward(np.ones(3), np.ones(4)), "same shape"),
])
def test_other_bad_input_raises_a_course_error(call, words):
    with pytest.raises(CourseError) as info:
        call()
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


# --- notebook helpers --------------------------------------------------------------------------


@pytest.mark.parametrize("answer,verdict", [
    (None, "not yet: W_student is still None"),
    (np.zeros((4, 6)), "not yet: W should have shape (3, 6)"),
    (deconv.conv1d_matrix([-1, 2, 1], 6, 2, 1), "not yet: your rows hold the kernel reversed"),
    (deconv.conv1d_matrix([1, 2, -1], 6, 2, 1) * [[1], [1], [0]], "not yet: row 2 is wrong"),
    ([[2, -1, 0, 0, 0, 0], [0, 1, 2, -1, 0, 0], [0, 0, 0, 1, 2, -1]], "correct"),
])
def test_exercise_check_gives_a_verdict(answer, verdict, capsys):
    deconv.check_conv_matrix_exercise(answer)
    assert capsys.readouterr().out.startswith(verdict)


def test_largest_error_is_printed_the_same_on_every_machine(capsys):
    deconv.print_largest_error(np.ones(3), np.ones(3) + 3e-7, "a vs b")
    deconv.print_largest_error(np.ones(3), np.array([1.0, 1.0, 1.42]), "a vs c")
    assert capsys.readouterr().out.splitlines() == [
        "a vs b: largest error < 1e-05: they agree", "a vs c: largest error 4e-01: they differ"]


# --- the sub-pixel convolution (Shi et al. 2016) -----------------------------------------------


@pytest.mark.parametrize("stride,padding", STRIDES_AND_PADDINGS)
def test_sub_pixel_convolution_equals_the_transposed_convolution(stride, padding):
    rng = np.random.default_rng(stride * 10 + padding)
    for n, k in _lengths(stride, padding):
        kernel = rng.normal(size=(k, k))
        m = deconv.conv_output_size(n, k, stride, padding)
        y = rng.normal(size=(m, m))
        np.testing.assert_allclose(deconv.conv2d_transpose_subpixel(y, kernel, (n, n), stride,
                                                                     padding),
                                   deconv.conv2d_transpose(y, kernel, (n, n), stride, padding),
                                   **TOL)


def test_sub_pixel_convolution_takes_one_stride_for_both_axes():
    with pytest.raises(CourseError, match="one stride"):
        deconv.conv2d_transpose_subpixel(np.ones((2, 2)), np.ones((3, 3)), (5, 5), (2, 1))


# --- the transposed-convolution exercise and figure ----------------------------------------


def _transpose_by_zero_insertion(y, kernel, stride, padding, n_in, flip=True, crop=True):
    k = len(kernel)
    leftover = (n_in + 2 * padding - k) % stride
    z = np.pad(deconv.insert_zeros(y, stride), (k - 1, k - 1 + leftover))
    w = kernel[::-1] if flip else kernel
    full = np.array([z[i:i + k] @ w for i in range(z.size - k + 1)])
    return full[padding:padding + n_in] if crop else full


@pytest.mark.parametrize("answer,verdict", [
    (_transpose_by_zero_insertion, "correct"),
    (lambda y, w, s, p, n: _transpose_by_zero_insertion(y, w, s, p, n, flip=False),
     "not yet: on k=4, s=2, p=2, n=8 (kernel [1, 2, 3, 4], y [1, 2, 3, 4, 5]) your result is "
     "what the kernel gives *unflipped*"),
    (lambda y, w, s, p, n: _transpose_by_zero_insertion(y, w, s, p, n, crop=False),
     "not yet: on k=4, s=2, p=2, n=8 (kernel [1, 2, 3, 4], y [1, 2, 3, 4, 5]) your result has "
     "12 samples"),
    (lambda y, w, s, p, n: _transpose_by_zero_insertion(y, w, s, p, n)[::-1],
     "not yet: on k=4, s=2, p=2, n=8 (kernel [1, 2, 3, 4], y [1, 2, 3, 4, 5]) Wᵀ y is"),
    (lambda y, w, s, p, n: None, "not yet: your function returns None"),
    (lambda y, w, s, p, n: y[10], "not yet: your function raised IndexError"),
])
def test_transpose_exercise_check_gives_a_verdict(answer, verdict, capsys):
    deconv.check_transpose_exercise(answer)
    assert capsys.readouterr().out.startswith(verdict)


def test_transpose_figure_draws_w_its_transpose_and_the_zero_inserted_view():
    import matplotlib.pyplot as plt

    fig = deconv.draw_transpose(4, 2, 2, 8)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("W: 5 × 8") and titles[1].startswith("Wᵀ: 8 × 5")
    plt.close(fig)
    with pytest.raises(CourseError, match="does not fit"):
        deconv.draw_transpose(5, 1, 0, 3)


def test_transpose_panel_redraws_on_a_slider_move_and_explains_a_setting_that_does_not_fit():
    panel = deconv.transpose_panel()
    sliders, message, picture = panel.children[0].children, panel.children[1], panel.children[2]
    first = picture.value
    assert first[:4] == b"\x89PNG" and message.value == ""
    sliders[0].value = 3                                        # k = 3
    assert picture.value != first
    sliders[3].value, sliders[2].value, sliders[0].value = 3, 0, 6     # n = 3, p = 0, k = 6
    assert "does not fit" in message.value
