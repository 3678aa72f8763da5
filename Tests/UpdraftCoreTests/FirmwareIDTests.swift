import Foundation
import Testing
import UpdraftCore

@Suite struct FirmwareIDTests {
    @Test func textFormRoundTrips() throws {
        let id = try FirmwareID(validating: "thermo@1.0")
        #expect(id.product == "thermo" && id.version == "1.0")
        #expect(id.rawValue == "thermo@1.0" && id.description == "thermo@1.0" && "\(id)" == "thermo@1.0")
        #expect(FirmwareID(product: "thermo", version: "1.0") == id)
        #expect(FirmwareID(rawValue: id.rawValue) == id)
        #expect(id == "thermo@1.0")
    }

    @Test func codableAsThePlainString() throws {
        let id: FirmwareID = "thermo@1.2.0-rc_1"
        #expect(String(decoding: try JSONEncoder().encode(id), as: UTF8.self) == #""thermo@1.2.0-rc_1""#)
        #expect(String(decoding: try JSONEncoder().encode(["firmware": id]), as: UTF8.self) == #"{"firmware":"thermo@1.2.0-rc_1"}"#)
        #expect(try JSONDecoder().decode(FirmwareID.self, from: Data(#""thermo@1.2.0-rc_1""#.utf8)) == id)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(FirmwareID.self, from: Data(#""thermo""#.utf8)) }
    }

    @Test func invalidTextIsRefusedAsBefore() {
        let wrongShape = UpdraftError(
            "invalid_firmware_id",
            "Invalid firmware id 'thermo': write it as PRODUCT@VERSION (see `updraft firmware list`).")
        #expect(throws: wrongShape) { try FirmwareID(validating: "thermo") }
        for text in ["a@b@c", "@", "", "thermo@1.0@"] {
            #expect(throws: UpdraftError.self) { try FirmwareID(validating: text) }
            #expect(FirmwareID(rawValue: text) == nil)
        }
        #expect((try? FirmwareID(validating: "a@b@c")) == nil)
        #expect(errorCode("a@b@c") == "invalid_firmware_id")
        // Each part keeps its own rule and code.
        #expect(errorCode("the rmo@1.0") == "invalid_product")
        #expect(errorCode("thermo@..") == "invalid_version")
        #expect(errorCode("@1.0") == "invalid_product")
    }

    @Test func ordersByTheTextForm() {
        let ids: [FirmwareID] = ["b@1", "a-b@1", "a@2", "a@10"]
        #expect(ids.sorted().map(\.rawValue) == ids.map(\.rawValue).sorted())
        #expect(Set(["a@1", "a@1"] as [FirmwareID]).count == 1)
    }

    private func errorCode(_ text: String) -> String? {
        do {
            _ = try FirmwareID(validating: text)
            return nil
        } catch {
            return error.code
        }
    }
}

/// Error codes are one token clients match on: an identifier's kind with a space ("device id")
/// must not put a space into its code.
@Suite struct InvalidIdentifierCodeTests {
    @Test func codesOfInvalidIdentifiersHaveNoSpace() {
        func code(_ make: () throws -> Void) -> String? {
            do { try make(); return nil } catch let error as UpdraftError { return error.code } catch { return "\(error)" }
        }
        let codes = [
            code { _ = try DeviceID(validating: "bad id!") }, code { _ = try ReleaseID(validating: "bad id!") },
            code { _ = try JobID(validating: "bad id!") }, code { _ = try TokenName(validating: "bad id!") },
        ]
        #expect(codes == ["invalid_device_id", "invalid_release_id", "invalid_job_id", "invalid_token_name"])
    }
}
