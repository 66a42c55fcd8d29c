// The device-list summary's key and text form, shared by the key-directory and the message-queue.
#include "services/common/device_lists/device_list_summary.h"

#include <gtest/gtest.h>

namespace padlock::device_lists {
namespace {

TEST(DeviceListSummary, KeyCarriesTheUsersHashTag) {
  EXPECT_EQ(SummaryKey("alice"), "dl:{alice}");
  EXPECT_EQ(SummaryKey("+15551234567"), "dl:{+15551234567}");
}

TEST(DeviceListSummary, EncodesListedAndNotListed) {
  Summary listed{.listed = true, .version = 12, .devices = {{1, 16380}, {3, 7}}};
  EXPECT_EQ(EncodeSummary(listed), "a 12 1:16380 3:7");
  EXPECT_EQ(EncodeSummary(Summary{}), "n");
}

TEST(DeviceListSummary, ParsesWhatItEncodes) {
  Summary listed{.listed = true, .version = 18446744073709551615u, .devices = {{1, 1}, {2, 9}}};
  EXPECT_EQ(ParseSummary(EncodeSummary(listed)), listed);
  EXPECT_EQ(ParseSummary("n"), Summary{});
  // A listed account with no devices cannot exist, but the form stays parseable.
  EXPECT_EQ(ParseSummary("a 4"), (Summary{.listed = true, .version = 4}));
}

TEST(DeviceListSummary, RejectsAnythingElse) {
  for (const char* bad : {"", "x", "n ", "a", "a 0 1:1", "a x 1:1", "a 3 1", "a 3 1:", "a 3 :1",
                          "a 3 0:5", "a 3 2:1 1:1", "a 3 1:1 1:2", "a 3 1:1  2:2", "a -3 1:1",
                          "a 3 1:99999999999", "a 3 1:2:3", "a 3 +1:2",
                          "a 03 1:2", " n"}) {
    EXPECT_EQ(ParseSummary(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace padlock::device_lists
