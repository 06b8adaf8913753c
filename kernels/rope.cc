#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace slimkv::kernels {
namespace {

// HF transformers' yarn get_mscale.
double YarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Dimension (in rotary_dim units) whose wavelength makes `rotations` turns over `max_pos`.
double YarnCorrectionDim(double rotations, int dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

// The RoPE base: theta, raised by dynamic NTK past the original length (python floats: double).
double Base(const RopeParams& p) {
  const RopeScaling& s = p.scaling;
  double base = p.theta;
  if (s.type == RopeScalingType::kDynamicNtk) {
    const double seq = std::max<double>(s.dynamic_seq_len, s.original_max_position_embeddings);
    base *= std::pow(s.factor * seq / s.original_max_position_embeddings - (s.factor - 1.0),
                     p.rotary_dim / (p.rotary_dim - 2.0));
  }
  return base;
}

// YaRN's ramp between extrapolated (j < low) and interpolated (j > high) frequencies.
void YarnRange(const RopeParams& p, double base, double* low, double* high) {
  const RopeScaling& s = p.scaling;
  const int dim = p.rotary_dim;
  *low = YarnCorrectionDim(s.beta_fast, dim, base, s.original_max_position_embeddings);
  *high = YarnCorrectionDim(s.beta_slow, dim, base, s.original_max_position_embeddings);
  if (s.truncate) {
    *low = std::floor(*low);
    *high = std::ceil(*high);
  }
  *low = std::max(*low, 0.0);
  *high = std::min(*high, dim - 1.0);
  if (*low == *high) *high += 0.001;
}

// The scaling factor on the keys: a when applied through cos/sin, else 1.
double KeyScale(const RopeParams& p) {
  return p.attention_factor_in_cos_sin ? RopeAttentionFactor(p) : 1.0;
}

// Angle of frequency j at position pos, formed as the engine forms it.
double Angle(const RopeParams& p, int32_t pos, double inv_freq) {
  if (p.fp32_angles) {
    return static_cast<double>(static_cast<float>(pos) * static_cast<float>(inv_freq));
  }
  return pos * inv_freq;
}

// Indices of the two dims of pair j inside a head.
inline void PairDims(const RopeParams& p, int j, int* a, int* b) {
  if (p.pairing == RopePairing::kHalfSplit) {
    *a = j;
    *b = j + p.rotary_dim / 2;
  } else {
    *a = 2 * j;
    *b = 2 * j + 1;
  }
}

}  // namespace

absl::Status ValidateRopeParams(const RopeParams& p) {
  if (p.head_dim <= 0) return absl::InvalidArgumentError("rope: head_dim must be positive");
  if (p.rotary_dim <= 0 || p.rotary_dim > p.head_dim || p.rotary_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rope: rotary_dim ", p.rotary_dim,
                                                   " must be even and in (0, head_dim=",
                                                   p.head_dim, "]"));
  }
  if (!(p.theta > 1.0)) return absl::InvalidArgumentError("rope: theta must be > 1");
  const RopeScaling& s = p.scaling;
  if (s.type != RopeScalingType::kNone && !(s.factor > 0.0)) {
    return absl::InvalidArgumentError("rope_scaling.factor must be positive");
  }
  const bool needs_orig = s.type == RopeScalingType::kDynamicNtk ||
                          s.type == RopeScalingType::kYarn || s.type == RopeScalingType::kLlama3;
  if (needs_orig && s.original_max_position_embeddings <= 0) {
    return absl::InvalidArgumentError(
        "rope_scaling.original_max_position_embeddings must be positive");
  }
  if (s.type == RopeScalingType::kLlama3 && !(s.high_freq_factor > s.low_freq_factor)) {
    return absl::InvalidArgumentError("rope_scaling: high_freq_factor must exceed low_freq_factor");
  }
  if (s.type == RopeScalingType::kYarn && !(s.beta_fast > 0.0 && s.beta_slow > 0.0)) {
    return absl::InvalidArgumentError("rope_scaling: beta_fast and beta_slow must be positive");
  }
  return absl::OkStatus();
}

namespace {

// The float64 schedule (fp32_angles = false): exact frequencies, for the oracle.
std::vector<double> RopeInvFreqF64(const RopeParams& p) {
  const int dim = p.rotary_dim;
  const int half = dim / 2;
  const RopeScaling& s = p.scaling;
  const double base = Base(p);
  std::vector<double> inv(half);
  for (int j = 0; j < half; ++j) inv[j] = 1.0 / std::pow(base, 2.0 * j / dim);

  switch (s.type) {
    case RopeScalingType::kNone:
    case RopeScalingType::kDynamicNtk:
      break;
    case RopeScalingType::kLinear:
      for (double& f : inv) f /= s.factor;
      break;
    case RopeScalingType::kYarn: {
      double low, high;
      YarnRange(p, base, &low, &high);
      for (int j = 0; j < half; ++j) {
        // extrapolation weight: 1 for high frequencies (j < low), 0 for low ones (j > high).
        const double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
        const double extrapolate = 1.0 - ramp;
        inv[j] = inv[j] / s.factor * (1.0 - extrapolate) + inv[j] * extrapolate;
      }
      break;
    }
    case RopeScalingType::kLlama3: {
      const double old_len = static_cast<double>(s.original_max_position_embeddings);
      const double low_wavelen = old_len / s.low_freq_factor;
      const double high_wavelen = old_len / s.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen > low_wavelen) {
          f /= s.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (old_len / wavelen - s.low_freq_factor) /
                                (s.high_freq_factor - s.low_freq_factor);
          f = (1.0 - smooth) * f / s.factor + smooth * f;
        }
      }
      break;
    }
  }
  return inv;
}

// HF transformers' modeling_rope_utils, operation for operation in float32 (torch's default
// dtype): base ** (arange(0, dim, 2) / dim), 1 / that, then the scaling's float32 arithmetic.
// Python scalars meet float32 tensors as float32; python-only arithmetic stays double.
std::vector<double> RopeInvFreqF32(const RopeParams& p) {
  const int dim = p.rotary_dim;
  const int half = dim / 2;
  const RopeScaling& s = p.scaling;
  const double base = Base(p);
  const float base_f = static_cast<float>(base);
  const float factor = static_cast<float>(s.factor);
  std::vector<float> pos_freqs(half), inv(half);
  for (int j = 0; j < half; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(dim);
    pos_freqs[j] = static_cast<float>(std::pow(static_cast<double>(base_f), static_cast<double>(e)));
    inv[j] = 1.0f / pos_freqs[j];
  }
  switch (s.type) {
    case RopeScalingType::kNone:
    case RopeScalingType::kDynamicNtk:
      break;
    case RopeScalingType::kLinear:
      for (float& f : inv) f /= factor;
      break;
    case RopeScalingType::kYarn: {
      double low, high;
      YarnRange(p, base, &low, &high);
      const float lo = static_cast<float>(low), span = static_cast<float>(high - low);
      for (int j = 0; j < half; ++j) {
        const float ramp = std::clamp((static_cast<float>(j) - lo) / span, 0.0f, 1.0f);
        const float extrapolate = 1.0f - ramp;
        const float interpolation = 1.0f / (factor * pos_freqs[j]);
        inv[j] = interpolation * (1.0f - extrapolate) + inv[j] * extrapolate;
      }
      break;
    }
    case RopeScalingType::kLlama3: {
      const double old_len = static_cast<double>(s.original_max_position_embeddings);
      const float low_wavelen = static_cast<float>(old_len / s.low_freq_factor);
      const float high_wavelen = static_cast<float>(old_len / s.high_freq_factor);
      const float two_pi = static_cast<float>(2.0 * std::numbers::pi);
      const float old_len_f = static_cast<float>(old_len);
      const float lff = static_cast<float>(s.low_freq_factor);
      const float span = static_cast<float>(s.high_freq_factor - s.low_freq_factor);
      for (float& f : inv) {
        const float wavelen = (1.0f / f) * two_pi;  // python `2π / t`: reciprocal, then times
        const float llama = wavelen > low_wavelen ? f / factor : f;
        const float smooth = ((1.0f / wavelen) * old_len_f - lff) / span;
        const float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        f = medium ? smoothed : llama;
      }
      break;
    }
  }
  return std::vector<double>(inv.begin(), inv.end());
}

}  // namespace

std::vector<double> RopeInvFreq(const RopeParams& p) {
  return p.fp32_angles ? RopeInvFreqF32(p) : RopeInvFreqF64(p);
}

double RopeAttentionFactor(const RopeParams& p) {
  const RopeScaling& s = p.scaling;
  if (s.type != RopeScalingType::kYarn) return 1.0;
  if (s.attention_factor > 0.0) return s.attention_factor;
  if (s.mscale > 0.0 && s.mscale_all_dim > 0.0) {
    return YarnMscale(s.factor, s.mscale) / YarnMscale(s.factor, s.mscale_all_dim);
  }
  return YarnMscale(s.factor, 1.0);
}

void ApplyRopeRef(const RopeParams& p, double* x, int64_t tokens, int heads,
                  const int32_t* positions, bool inverse) {
  const std::vector<double> inv_freq = RopeInvFreq(p);
  const double scale = inverse ? 1.0 / KeyScale(p) : KeyScale(p);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      double* head = x + (t * heads + h) * p.head_dim;
      for (int j = 0; j < p.rotary_dim / 2; ++j) {
        const double angle = Angle(p, positions[t], inv_freq[j]);
        const double c = std::cos(angle);
        const double s = inverse ? -std::sin(angle) : std::sin(angle);
        int ia, ib;
        PairDims(p, j, &ia, &ib);
        const double a = head[ia], b = head[ib];
        head[ia] = scale * (a * c - b * s);
        head[ib] = scale * (b * c + a * s);
      }
    }
  }
}

absl::StatusOr<RopeTable> RopeTable::Create(const RopeParams& p) {
  if (absl::Status s = ValidateRopeParams(p); !s.ok()) return s;
  RopeTable table;
  table.params_ = p;
  table.inv_freq_ = RopeInvFreq(p);
  table.scale_ = KeyScale(p);
  return table;
}

void RopeTable::CosSinScaled(int32_t position, bool inverse, float* cos, float* sin) const {
  const double scale = inverse ? 1.0 / scale_ : scale_;
  for (int j = 0; j < params_.rotary_dim / 2; ++j) {
    const double angle = Angle(params_, position, inv_freq_[j]);
    cos[j] = static_cast<float>(scale * std::cos(angle));
    sin[j] = static_cast<float>(scale * (inverse ? -std::sin(angle) : std::sin(angle)));
  }
}

void RopeTable::CosSin(int32_t position, float* cos, float* sin) const {
  CosSinScaled(position, /*inverse=*/false, cos, sin);
}

void RopeTable::Apply(float* x, int64_t tokens, int heads, const int32_t* positions,
                      bool inverse) const {
  const RopeParams& p = params_;
  const int half = p.rotary_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < tokens; ++t) {
    CosSinScaled(positions[t], inverse, cos_t.data(), sin_t.data());
    for (int h = 0; h < heads; ++h) {
      float* head = x + (t * heads + h) * p.head_dim;
      if (p.pairing == RopePairing::kHalfSplit) {
        float* lo = head;
        float* hi = head + half;
        for (int j = 0; j < half; ++j) {
          const float a = lo[j], b = hi[j];
          lo[j] = a * cos_t[j] - b * sin_t[j];
          hi[j] = b * cos_t[j] + a * sin_t[j];
        }
      } else {
        for (int j = 0; j < half; ++j) {
          const float a = head[2 * j], b = head[2 * j + 1];
          head[2 * j] = a * cos_t[j] - b * sin_t[j];
          head[2 * j + 1] = b * cos_t[j] + a * sin_t[j];
        }
      }
    }
  }
}

}  // namespace slimkv::kernels
