"""layout_testlib.py - reference paging for the layout tests (test_kvtc.py on
the CPU, test_kvtc_cuda.py on the GPU), written with plain torch indexing,
independently of kvtc.layout: move a [L, H, T, d] cache into vLLM-style
per-layer pools through a block table and back."""


def shuffled_table(torch, n_tokens, block_size, n_pool, seed, device="cpu"):
    """One request's block table: ceil(n_tokens / block_size) distinct blocks
    of a pool of n_pool, in a random order (int32 on `device`)."""
    n_blocks = -(-n_tokens // block_size)
    perm = torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))[:n_blocks]
    return perm.to(torch.int32).to(device)


def to_pages(torch, x, table, block_size, n_pool, nhd=True):
    """Per-layer pools [n_pool, S, H, d] (nhd) or [n_pool, H, S, d] holding
    x [L, H, T, d]: token t in block table[t // S], slot t % S; other slots 0."""
    n_layers, n_heads, n_tokens, dim = x.shape
    nb = -(-n_tokens // block_size)
    pools = []
    for layer in range(n_layers):
        padded = torch.zeros(nb * block_size, n_heads, dim, dtype=x.dtype, device=x.device)
        padded[:n_tokens] = x[layer].permute(1, 0, 2)
        pool = torch.zeros(n_pool, block_size, n_heads, dim, dtype=x.dtype, device=x.device)
        pool[table[:nb].long()] = padded.reshape(nb, block_size, n_heads, dim)
        pools.append(pool if nhd else pool.permute(0, 2, 1, 3).contiguous())
    return pools


def empty_pages(torch, like, n_layers, n_pool, block_size, nhd=True, fill=float("nan")):
    """Per-layer pools shaped like to_pages' output, filled with `fill` (NaN by
    default, so a slot the decoder should have written and did not shows)."""
    n_heads, dim = like.shape[1], like.shape[3]
    shape = (n_pool, block_size, n_heads, dim) if nhd else (n_pool, n_heads, block_size, dim)
    return [torch.full(shape, fill, dtype=like.dtype, device=like.device) for _ in range(n_layers)]


def from_pages(torch, pools, table, block_size, n_tokens, nhd=True):
    """The [len(pools), H, n_tokens, d] cache that to_pages stored."""
    nb = -(-n_tokens // block_size)
    out = []
    for pool in pools:
        p = pool if nhd else pool.permute(0, 2, 1, 3)
        blocks = p[table[:nb].long()]
        out.append(blocks.reshape(nb * block_size, p.shape[2], p.shape[3])[:n_tokens].permute(1, 0, 2))
    return torch.stack(out)
