// Embedding lookup: out[t, :] = table[ids[t], :], one block per token, with __ldg reads.
__global__ void embedding_lookup(const int *__restrict__ ids, const float *__restrict__ table, float *__restrict__ out,
                                 int vocab, int dim) {
  int token = blockIdx.x;
  int id = __ldg(&ids[token]);
  id = min(max(id, 0), vocab - 1);
  for (int d = threadIdx.x; d < dim; d += blockDim.x) out[(size_t)token * dim + d] = __ldg(table + (size_t)id * dim + d);
}
