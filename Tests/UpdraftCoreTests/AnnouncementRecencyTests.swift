import Testing
import UpdraftCore

/// Which announcements may judge a job: a boot counter decides when both sides have one,
/// the retain flag otherwise.
@Suite struct AnnouncementRecencyTests {
    func announcement(boot: UInt64?) -> Announcement { Announcement(product: "p", version: "1", boot: boot) }

    @Test(arguments: [
        // (boot, known boot, replayed, expected)
        (UInt64?(8), UInt64?(7), false, Announcement.Recency.news),
        (8, 7, true, .news),  // rebooted while the gateway was not listening
        (7, 7, false, .current),  // a re-announce of the same boot
        (7, 7, true, .current),  // the retained copy of the boot that reported installing
        (6, 7, true, .outdated),  // a broker restored an older copy
        (0, 7, false, .news),  // counter reset (factory reset), said live
        (nil, 7, false, .news),
        (nil, 7, true, .current),
        (7, nil, false, .news),
        (7, nil, true, .current),
        (nil, nil, false, .news),
        (nil, nil, true, .current),
    ])
    func recency(boot: UInt64?, known: UInt64?, replayed: Bool, expected: Announcement.Recency) {
        #expect(announcement(boot: boot).recency(knownBoot: known, replayed: replayed) == expected)
    }
}
