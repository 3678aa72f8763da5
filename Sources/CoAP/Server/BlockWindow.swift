/// Which bytes of a GET answer one response carries (RFC 7959), from the request's Block2
/// option, the body's size and the room in the session's PDU. Pure, so the server's
/// handling of a device's Block2 option is fuzzed without a socket (README "Fuzzing").
package enum BlockWindow: Equatable {
    /// The whole body, without a Block2 option.
    case whole
    /// Block `num` of `16 << szx` bytes: `range` of the body, and whether more follow.
    case block(num: UInt32, szx: UInt32, range: Range<Int>, more: Bool)

    /// Why a request's Block2 option cannot be answered (4.00), whatever the method; `nil`
    /// when it can. Only for a non-empty success body: an error's diagnostic goes whole.
    package static func refusal(_ block2: (num: UInt32, szx: UInt32)?, bodySize: Int) -> String? {
        guard let block = block2 else { return nil }
        // RFC 7959 2.2: SZX 7 is reserved.
        if block.szx > 6 { return "Block2 SZX 7 is reserved; use 0-6 (16-1024 bytes)" }
        if block.num > 0, UInt64(bodySize) <= UInt64(block.num) << (block.szx + 4) {
            return "Block2 number past the end of the body"
        }
        return nil
    }

    /// The block to send once ``refusal(_:bodySize:)`` found nothing wrong. Without a
    /// Block2 option a body that fits one PDU goes whole; else the block size is the
    /// request's, made smaller when the PDU cannot carry it (RFC 7959 2.4), and the block
    /// number scaled so the block starts at the byte asked for.
    package static func select(_ block2: (num: UInt32, szx: UInt32)?, bodySize: Int, room: Int) -> BlockWindow {
        if block2 == nil && bodySize <= room { return .whole }
        var szx = block2?.szx ?? 6
        while szx > 0 && (16 << szx) > room { szx -= 1 }
        let num = block2.map { $0.num << ($0.szx - szx) } ?? 0
        let size = 16 << Int(szx)
        let offset = Int(num) * size
        let end = min(offset + size, bodySize)
        return .block(num: num, szx: szx, range: offset..<end, more: end < bodySize)
    }
}
