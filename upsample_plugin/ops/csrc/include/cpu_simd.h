// Vector types and loads/stores of the CPU kernels' hot loops. No include guard and no #includes: read by
// cpu_isa_instantiate.h inside each instruction-set namespace, after `constexpr int kVecBytes` (16, 32 or 64).
//
// gcc vector extensions: `+` and `*` act lane by lane and round like the scalar operators (no FMA contraction:
// -ffp-contract=off), so lane l of a vector sum is exactly the scalar sum of element l, in every build. The
// same loop bodies are instantiated with V = acc_t (one lane) for the tails of rows.

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
// The vector of acc_t (float or double) of this build.
template <typename T>
using vec_t = typename VecOf<T>::type;

// Lanes of V: 1 for a scalar, kVecBytes / sizeof(element) for a vector.
template <typename V, typename T>
constexpr int64_t lanes() {
  return static_cast<int64_t>(sizeof(V) / sizeof(T));
}

// V from `lanes` consecutive values at p (any alignment), converted to the accumulation type T.
template <typename V, typename T, typename S>
inline V load(const S* p) {
  V v;
  if constexpr (sizeof(S) == sizeof(T)) {
    __builtin_memcpy(&v, p, sizeof(V));  // S is T: an unaligned vector load
  } else {
    T tmp[lanes<V, T>()];
    for (int64_t l = 0; l < lanes<V, T>(); ++l) tmp[l] = static_cast<T>(p[l]);
    __builtin_memcpy(&v, tmp, sizeof(V));
  }
  return v;
}

// Stores v's lanes at p (any alignment), converted to S.
template <typename V, typename T, typename S>
inline void store(S* p, const V& v) {
  if constexpr (sizeof(S) == sizeof(T)) {
    __builtin_memcpy(p, &v, sizeof(V));
  } else {
    T tmp[lanes<V, T>()];
    __builtin_memcpy(tmp, &v, sizeof(V));
    for (int64_t l = 0; l < lanes<V, T>(); ++l) p[l] = static_cast<S>(tmp[l]);
  }
}

// Every lane = x.
template <typename V, typename T>
inline V splat(T x) {
  return V{} + x;
}

// Makes the compiler hold v in a register: where one loaded vector feeds several products, gcc would otherwise
// fold the load into each multiply (one load per product, and loads are what these loops run short of).
template <typename V>
inline void keep_in_register(V& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// Keeps a hot column loop a function of its own: inlined into the unit loops, gcc's register allocation of the
// combined function spilled accumulators (CARAFE's x2 forward took 1.2x as long, measured).
#ifndef UPSAMPLE_PLUGIN_NOINLINE
#if defined(__GNUC__)
#define UPSAMPLE_PLUGIN_NOINLINE __attribute__((noinline))
#else
#define UPSAMPLE_PLUGIN_NOINLINE
#endif
#endif
