import Testing

@testable import Mosquitto

/// The loop-thread check that loop-bound types run at their entry points.
@Suite("LoopHandle")
struct LoopHandleTests {
    @Test("a loop knows its own thread: in a command yes, on any other thread no")
    func knowsItsThread() async {
        let loop = MosquittoEventLoop(name: "inloop-test")
        defer { loop.shutdown() }
        #expect(!loop.handle.inLoop)
        let onLoop = await withCheckedContinuation { continuation in
            let handle = loop.handle
            loop.execute { continuation.resume(returning: handle.inLoop) }
        }
        #expect(onLoop)
        let elsewhere = await Task.detached { loop.handle.inLoop }.value
        #expect(!elsewhere)
    }
}
