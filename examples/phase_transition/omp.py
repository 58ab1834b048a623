"""Sparse recovery by Orthogonal Matching Pursuit: where does it stop working?

For a random Gaussian n x N matrix A and a k-sparse x, OMP tries to recover x from y = A x.
Donoho-Tanner style phase diagram: delta = n/N (undersampling), rho = k/n (sparsity).
"""
import numpy as np


def recover(delta, rho, N=100, seed=0, tol=1e-4):
    rng = np.random.default_rng(seed)
    n = max(1, int(round(delta * N)))
    k = max(1, int(round(rho * n)))
    A = rng.standard_normal((n, N)) / np.sqrt(n)
    x = np.zeros(N)
    support = rng.choice(N, size=k, replace=False)
    x[support] = rng.standard_normal(k)
    y = A @ x
    # OMP: greedily add the column most correlated with the residual, refit by least squares,
    # until the residual vanishes (at most n steps)
    chosen, r = [], y.copy()
    coef = np.zeros(0)
    for _ in range(n):
        j = int(np.argmax(np.abs(A.T @ r)))
        if j in chosen:
            break
        chosen.append(j)
        coef, *_ = np.linalg.lstsq(A[:, chosen], y, rcond=None)
        r = y - A[:, chosen] @ coef
        if np.linalg.norm(r) <= 1e-10 * np.linalg.norm(y):
            break
    xhat = np.zeros(N)
    xhat[chosen] = coef
    rel = float(np.linalg.norm(xhat - x) / np.linalg.norm(x))
    return {"success": rel < tol, "rel_error": rel, "n": n, "k": k, "steps": len(chosen),
            "support_found": len(set(chosen) & set(support.tolist())) / k}
