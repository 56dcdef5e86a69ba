#include "server/store_records.h"

namespace asflow {

void NewRows::Add(int64_t seq, v1::InstanceState state, int64_t finished_ms, absl::string_view params,
                  absl::string_view output) {
  text_.append(params.data(), params.size());
  const auto params_end = static_cast<uint32_t>(text_.size());
  text_.append(output.data(), output.size());
  rows_.push_back(Row_{seq, finished_ms, params_end, static_cast<uint32_t>(text_.size()), state});
}

NewRows::RowView NewRows::Row(size_t i) const {
  const Row_& row = rows_[i];
  const uint32_t begin = i == 0 ? 0 : rows_[i - 1].output_end;
  const absl::string_view text(text_);
  return RowView{row.seq, row.finished_ms, row.state, text.substr(begin, row.params_end - begin),
                 text.substr(row.params_end, row.output_end - row.params_end)};
}

}  // namespace asflow
