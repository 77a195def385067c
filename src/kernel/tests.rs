use super::*;

/// `rows` images of 784 pixels, a fifth of them lit, and a dark band of 40 pixels in each
/// (the fast scan skips dark runs of 16).
fn images(rows: usize) -> Vec<u8> {
    (0..rows * 784)
        .map(|i| {
            if (i * 7919) % 5 == 0 && !(300..340).contains(&(i % 784)) {
                (i % 251) as u8
            } else {
                0
            }
        })
        .collect()
}

/// Every version of the loops this CPU runs (on an AVX-512 machine: AVX-512, AVX2 and the
/// portable one), with each width.
fn paths_and_widths(widths: &[usize]) -> Vec<(KernelPath, usize)> {
    let paths = KernelPath::supported();
    assert_eq!(paths.last(), Some(&KernelPath::Portable));
    paths
        .into_iter()
        .flat_map(|p| widths.iter().map(move |&w| (p, w)))
        .collect()
}

/// The reference sum: `Σ (x / 255) · y` over the pairs whose pixel `x` is lit, in order,
/// from zero, one multiply-add each (fused where the loop's version fuses).
fn in_order(fused: bool, pairs: impl Iterator<Item = (u8, f32)>) -> f32 {
    pairs.filter(|&(x, _)| x != 0).fold(0.0, |acc, (x, y)| {
        let v = x as f32 * (1.0 / 255.0);
        if fused {
            v.mul_add(y, acc)
        } else {
            acc + v * y
        }
    })
}

/// Every entry `out[i, c]` (rows of `d_out`) is, bit for bit, the in-order sum of the terms
/// `terms(i, c)` gives.
fn assert_each_sum_in_order(
    out: &[f32],
    d_out: usize,
    fused: bool,
    what: &str,
    terms: impl Fn(usize, usize) -> Vec<(u8, f32)>,
) {
    for (i, row) in out.chunks_exact(d_out).enumerate() {
        for (c, got) in row.iter().enumerate() {
            let want = in_order(fused, terms(i, c).into_iter());
            assert_eq!(got.to_bits(), want.to_bits(), "{what} {i} {c}");
        }
    }
}

fn weights(pixels: usize, d_out: usize) -> Vec<f32> {
    (0..pixels * d_out)
        .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
        .collect()
}

/// A batch gathered by index is the same as those images read one after another, and every
/// lit pixel is found.
#[test]
fn gather_takes_the_indexed_images() {
    let all = images(50);
    let indices = [7u32, 0, 49, 7, 23];
    let picked: Vec<u8> = indices
        .iter()
        .flat_map(|&i| all[i as usize * 784..(i as usize + 1) * 784].to_vec())
        .collect();
    let a = SparseImages::gather(&all, &indices, 784);
    let b = SparseImages::from_bytes(&picked, 784);
    assert_eq!((a.start.clone(), a.pixel.clone()), (b.start, b.pixel));
    assert_eq!(a.value, b.value);
    assert_eq!(a.rows(), 5);
    let lit = picked.iter().filter(|&&v| v != 0).count();
    assert_eq!(a.pixel.len(), lit);
    for r in 0..5 {
        for k in a.start[r] as usize..a.start[r + 1] as usize {
            let v = picked[r * 784 + a.pixel[k] as usize];
            assert_eq!(a.value[k], v as f32 * (1.0 / 255.0));
        }
    }
}

/// The training product: no bias, each output summed from zero in pixel order with one
/// multiply-add per lit pixel (checked against exactly that, bit for bit), on every
/// version of the loop this CPU runs.
#[test]
fn first_product_sums_in_pixel_order() {
    let (rows, pixels) = (130, 784);
    let all = images(rows);
    let sparse = SparseImages::from_bytes(&all, pixels);
    for (path, d_out) in paths_and_widths(&[256, 100]) {
        let fused = path.fused();
        let w = weights(pixels, d_out);
        let mut out = vec![1f32; rows * d_out];
        let host = HostWeights::new(&w, pixels, d_out);
        first_layer_on(
            path,
            Sums::InPixelOrder,
            &sparse,
            &host,
            &vec![0.0; d_out],
            Then::Store,
            &mut out,
        );
        assert_each_sum_in_order(&out, d_out, fused, &format!("{path:?}"), |r, c| {
            (0..pixels)
                .map(|p| (all[r * pixels + p], w[p * d_out + c]))
                .collect()
        });
    }
}

/// The weight gradient `xᵀ · grad`: each entry summed over the images in order (bit for
/// bit), rows of pixels no image lit exactly zero, and the same with any thread count.
#[test]
fn weight_gradient_sums_over_the_batch_in_order() {
    let (rows, pixels) = (128, 784);
    let all = images(rows);
    let sparse = SparseImages::from_bytes(&all, pixels);
    for (path, d_out) in paths_and_widths(&[256, 70]) {
        let fused = path.fused();
        let grad: Vec<f32> = (0..rows * d_out)
            .map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let mut out = vec![1f32; pixels * d_out];
        weight_gradient_on(path, &sparse, &grad, d_out, &mut out);
        assert_each_sum_in_order(&out, d_out, fused, &format!("{path:?}"), |p, c| {
            (0..rows)
                .map(|r| (all[r * pixels + p], grad[r * d_out + c]))
                .collect()
        });
        assert!(out[320 * d_out..321 * d_out].iter().all(|&v| v == 0.0));
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool");
        let mut again = vec![0f32; pixels * d_out];
        one_thread.install(|| weight_gradient_on(path, &sparse, &grad, d_out, &mut again));
        assert_eq!(out, again);
    }
}

/// Against the dense product in f64, for widths with and without a remainder block, in
/// either order of the sums; images with an odd and an even number of lit pixels.
#[test]
fn matches_the_dense_product() {
    let (rows, pixels) = (130, 784);
    let images = images(rows);
    let sparse = SparseImages::from_bytes(&images, pixels);
    assert_eq!(sparse.rows(), rows);
    assert!(
        (sparse.density() - 0.19).abs() < 0.02,
        "{}",
        sparse.density()
    );
    let lit = |r: usize| sparse.start[r + 1] - sparse.start[r];
    assert!((0..rows).any(|r| lit(r) % 2 == 1) && (0..rows).any(|r| lit(r) % 2 == 0));
    for (path, d_out) in paths_and_widths(&[256, 100, 10]) {
        for sums in [Sums::InPixelOrder, Sums::TwoHalves] {
            let w = weights(pixels, d_out);
            let bias: Vec<f32> = (0..d_out).map(|j| j as f32 * 0.01).collect();
            let host = HostWeights::new(&w, pixels, d_out);
            let layer = |then| {
                let mut out = vec![0f32; rows * d_out];
                first_layer_on(path, sums, &sparse, &host, &bias, then, &mut out);
                out
            };
            let (out, relu, leaky) = (
                layer(Then::Store),
                layer(Then::Relu),
                layer(Then::LeakyRelu(0.1)),
            );
            for ((&x, &r), &l) in out.iter().zip(&relu).zip(&leaky) {
                assert_eq!(r, x.max(0.0));
                assert_eq!(l, if x >= 0.0 { x } else { x * 0.1 });
            }
            for r in 0..rows {
                for c in 0..d_out {
                    let want = bias[c] as f64
                        + (0..pixels)
                            .map(|p| {
                                images[r * pixels + p] as f64 / 255.0 * w[p * d_out + c] as f64
                            })
                            .sum::<f64>();
                    let got = out[r * d_out + c] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{path:?} {sums:?} row {r} col {c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
