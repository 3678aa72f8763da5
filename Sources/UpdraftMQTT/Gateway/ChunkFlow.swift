import Synchronization
import UpdraftCore

/// How much chunk traffic the gateway lets be on its way at once.
public struct ChunkFlowLimits: Sendable, Equatable {
    /// Windows one device may have in flight. A window is in flight from its download
    /// request until libmosquitto wrote its last chunk to the broker connection (or dropped
    /// it with the connection). Requests beyond are refused with `too_many_windows`.
    public var windowsPerDevice: Int
    /// Chunk bytes handed to libmosquitto and not yet written, over all devices. A window
    /// that would exceed it waits (the gateway stops reading device messages meanwhile)
    /// instead of being buffered; a window alone may exceed it.
    public var bytesInFlight: Int
    /// A device's download allowance for one job (see ``DownloadAllowance``): this many
    /// images at once, and one image more per `downloadRefill`.
    public var downloadImagesAtOnce: Int
    public var downloadRefill: Duration

    public init(
        windowsPerDevice: Int = 2, bytesInFlight: Int = 32 << 20, downloadImagesAtOnce: Int = 2,
        downloadRefill: Duration = .seconds(60)
    ) {
        self.windowsPerDevice = windowsPerDevice
        self.bytesInFlight = bytesInFlight
        self.downloadImagesAtOnce = downloadImagesAtOnce
        self.downloadRefill = downloadRefill
    }
}

/// The credit bookkeeping of ``ChunkFlow``: windows per device and bytes overall. Pure.
struct WindowCredits: Sendable, Equatable {
    let limits: ChunkFlowLimits
    /// Windows in flight per device (devices with none are not kept).
    private(set) var windows: [DeviceID: Int] = [:]
    /// Bytes of windows in flight, counted from the moment their budget was reserved.
    private(set) var bytes = 0
    /// Devices told `too_many_windows` since their last window closed: told once, the
    /// rest of their excess requests are dropped without an answer (an answer costs more
    /// than the request).
    private(set) var told: Set<DeviceID> = []

    init(limits: ChunkFlowLimits) { self.limits = limits }

    /// Takes one of `device`'s window credits; `false` when it has none left.
    func hasCredit(_ device: DeviceID) -> Bool { windows[device, default: 0] < limits.windowsPerDevice }

    /// Whether a refused request of `device` is answered (the first since a window closed).
    mutating func answerRefusal(for device: DeviceID) -> Bool { told.insert(device).inserted }

    mutating func openWindow(for device: DeviceID) -> Bool {
        let open = windows[device, default: 0]
        guard open < limits.windowsPerDevice else { return false }
        windows[device] = open + 1
        return true
    }

    /// Whether `count` more bytes fit the budget now. An idle budget takes any window, so
    /// one larger than the budget cannot wait forever.
    func fits(_ count: Int) -> Bool { bytes == 0 || bytes + count <= limits.bytesInFlight }

    mutating func reserve(_ count: Int) { bytes += count }

    /// A window was written or dropped: its credit and bytes come back.
    mutating func closeWindow(for device: DeviceID, bytes count: Int) {
        bytes -= count
        told.remove(device)
        let open = windows[device, default: 1] - 1
        windows[device] = open > 0 ? open : nil
    }
}

/// How many image bytes one device may be sent for one job: twice the image at once (a
/// download and one full restart), then one image's worth more per `refill`. Chunks are
/// QoS 0 and never acknowledged, so a window's credit comes back once it is written to
/// the broker, whether or not the device reads it; this is what stops a device that asks
/// for the same bytes again and again from filling the broker's queue for it. A device
/// that resumes asks only for what it lacks and never comes near it. Pure: time is given.
struct DownloadAllowance: Sendable {
    var imagesAtOnce = 2.0
    var refill: Duration = .seconds(60)
    private struct Entry { var job: JobID; var bytes: Double; var at: ContinuousClock.Instant }
    private var entries: [DeviceID: Entry] = [:]

    init(imagesAtOnce: Double = 2, refill: Duration = .seconds(60)) {
        self.imagesAtOnce = imagesAtOnce
        self.refill = refill
    }

    /// Takes `count` bytes of `device`'s allowance for `job`; `false` (nothing taken) when
    /// they are not there yet.
    mutating func spend(_ count: Int, device: DeviceID, job: JobID, imageSize: Int, at now: ContinuousClock.Instant) -> Bool {
        let capacity = imagesAtOnce * Double(imageSize)
        var entry = entries[device].flatMap { $0.job == job ? $0 : nil } ?? Entry(job: job, bytes: capacity, at: now)
        let (seconds, attoseconds) = (now - entry.at).components
        let (refillSeconds, refillAttoseconds) = refill.components
        let elapsed = Double(seconds) + Double(attoseconds) / 1e18
        let period = Double(refillSeconds) + Double(refillAttoseconds) / 1e18
        entry.bytes = min(capacity, entry.bytes + Double(imageSize) * elapsed / period)
        entry.at = now
        let granted = entry.bytes >= Double(count)
        if granted { entry.bytes -= Double(count) }
        entries[device] = entry
        return granted
    }
}

/// Flow control of chunk windows: a per-device credit (refuse beyond it) and a global
/// byte budget (wait for it), so that whatever devices ask, the chunk bytes the gateway
/// holds stay below `windowsPerDevice x window` per device and `bytesInFlight` overall.
final class ChunkFlow: Sendable {
    private struct State {
        var credits: WindowCredits
        var allowance: DownloadAllowance
        var waiters: [(bytes: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state: Mutex<State>

    init(limits: ChunkFlowLimits) {
        let allowance = DownloadAllowance(imagesAtOnce: Double(limits.downloadImagesAtOnce), refill: limits.downloadRefill)
        state = Mutex(State(credits: WindowCredits(limits: limits), allowance: allowance))
    }

    var limits: ChunkFlowLimits { state.withLock { $0.credits.limits } }
    var bytesInFlight: Int { state.withLock { $0.credits.bytes } }

    func hasCredit(_ device: DeviceID) -> Bool { state.withLock { $0.credits.hasCredit(device) } }
    func answerRefusal(for device: DeviceID) -> Bool { state.withLock { $0.credits.answerRefusal(for: device) } }

    enum Refusal { case noCredit, allowanceSpent }

    /// Opens a window of `bytes` for `device`'s `job`: takes a window credit and that much
    /// of its download allowance together, or neither.
    func openWindow(for device: DeviceID, job: JobID, bytes: Int, imageSize: Int) -> Refusal? {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard state.credits.hasCredit(device) else { return .noCredit }
            guard state.allowance.spend(bytes, device: device, job: job, imageSize: imageSize, at: now) else { return .allowanceSpent }
            _ = state.credits.openWindow(for: device)
            return nil
        }
    }

    /// Returns once `count` bytes fit the budget (first come, first served).
    func reserve(_ count: Int) async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                guard state.waiters.isEmpty, state.credits.fits(count) else {
                    state.waiters.append((count, continuation))
                    return false
                }
                state.credits.reserve(count)
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Gives back a window's credit and bytes, and lets waiting windows go that now fit.
    func closeWindow(for device: DeviceID, bytes count: Int) {
        let ready = state.withLock { state in
            state.credits.closeWindow(for: device, bytes: count)
            var ready: [CheckedContinuation<Void, Never>] = []
            while let first = state.waiters.first, state.credits.fits(first.bytes) {
                state.waiters.removeFirst()
                state.credits.reserve(first.bytes)
                ready.append(first.continuation)
            }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }
}
