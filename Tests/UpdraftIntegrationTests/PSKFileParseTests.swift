import Testing
import UpdraftCoAP

/// The CoAP pre-shared key file as the gateway reads it (the fuzz harness `psk` replays
/// the same parser with generated files).
@Suite struct PSKFileParseTests {
    /// Found by the psk fuzz harness: the line was split on Characters, and a space
    /// followed by a combining mark is one Character, so the device's key was skipped.
    @Test func aKeyStartingWithACombiningMarkIsRead() {
        let keys = PSKFile.parse("thermo-1 \u{301}key\nthermo-2 \t\u{301}k2\nthermo-3 plain\n")
        #expect(keys["thermo-1"] == Array("\u{301}key".utf8))
        #expect(keys["thermo-2"] == Array("\u{301}k2".utf8))
        #expect(keys["thermo-3"] == Array("plain".utf8))
    }

    @Test func commentsLoneWordsAndLongKeysAreSkipped() {
        let keys = PSKFile.parse("# thermo-1 old\n#\u{301}x y\nlonely\n thermo-2   key with spaces  \nthermo-3 \(String(repeating: "k", count: 65))\n")
        #expect(keys == ["thermo-2": Array("key with spaces".utf8)])
    }
}
