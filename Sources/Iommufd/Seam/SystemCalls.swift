import SystemPackage

/// The narrow seam through which the library reaches the kernel.
///
/// Every system call the API makes goes through one value of this protocol. The kernel
/// backend (``KernelSystemCalls``) forwards each call to Linux; a simulated kernel can
/// implement the same requirements and the whole API runs on it unchanged. Requests carry
/// the real ioctl numbers and the real C structs of the kernel ABI.
///
/// Implementations must be safe to call from several threads at once.
public protocol SystemCalls: Sendable {
  /// Opens `path` with `flags` (`O_RDWR`, `O_CLOEXEC`, ...) and returns the new descriptor.
  func open(_ path: FilePath, flags: Int32) throws(Errno) -> FileDescriptor

  /// Closes `fd`.
  func close(_ fd: FileDescriptor) throws(Errno)

  /// Issues ioctl `request` on `fd` with `argument` pointing at the request's struct.
  /// Returns the ioctl's non-negative result.
  func ioctl(_ fd: FileDescriptor, _ request: UInt, _ argument: UnsafeMutableRawPointer?)
    throws(Errno) -> Int32

  /// Maps `length` bytes at `offset` of `fd` (or anonymous memory when `fd` is nil).
  func mmap(length: Int, protection: Int32, flags: Int32, fd: FileDescriptor?, offset: Int64)
    throws(Errno) -> UnsafeMutableRawPointer

  /// Unmaps a mapping made by ``mmap(length:protection:flags:fd:offset:)``.
  func munmap(_ address: UnsafeMutableRawPointer, length: Int) throws(Errno)

  /// Reads into `buffer` at absolute `offset` of `fd`; returns the bytes read.
  func pread(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: Int64)
    throws(Errno) -> Int

  /// Writes `buffer` at absolute `offset` of `fd`; returns the bytes written.
  func pwrite(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: Int64)
    throws(Errno) -> Int

  /// Reads into `buffer` from the current position of `fd`; returns the bytes read.
  func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int

  /// Writes `buffer` at the current position of `fd`; returns the bytes written.
  func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer) throws(Errno) -> Int

  /// Creates an eventfd with `initialValue` and `flags` (`EFD_CLOEXEC`, `EFD_NONBLOCK`).
  func eventfd(initialValue: UInt32, flags: Int32) throws(Errno) -> FileDescriptor

  /// Creates an anonymous memory file named `name` (`memfd_create(2)`, with `MFD_*` flags).
  func memfdCreate(name: String, flags: UInt32) throws(Errno) -> FileDescriptor

  /// Sets the size of `fd` to `length` bytes (`ftruncate(2)`).
  func truncate(_ fd: FileDescriptor, length: Int64) throws(Errno)

  /// The names in the directory at `path`, without `.` and `..`, in no particular order
  /// (`opendir(3)`, `readdir(3)`): how discovery lists sysfs.
  func directoryEntries(_ path: FilePath) throws(Errno) -> [String]

  /// At most `maximumBytes` of the file at `path` from its start (`open(2)`, `read(2)`):
  /// how discovery reads a sysfs attribute.
  func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8]

  /// Where the symbolic link at `path` points (`readlink(2)`).
  func readLink(_ path: FilePath) throws(Errno) -> String

  /// Whether the process may reach `path` as `mode` asks (`access(2)`: `F_OK`, or `R_OK`,
  /// `W_OK` and `X_OK` together); the errno says why not.
  func checkAccess(_ path: FilePath, mode: Int32) throws(Errno)

  /// Writes `bytes` to the file at `path` in one `write(2)` (`open(2)` for writing):
  /// how a sysfs attribute is set, such as an mdev type's `create`.
  func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno)
}

extension SystemCalls {
  /// Memory files are this process's real memory on every seam (a simulated kernel maps
  /// them as the kernel does): by default they are made by ``KernelSystemCalls``.
  public func memfdCreate(name: String, flags: UInt32) throws(Errno) -> FileDescriptor {
    try KernelSystemCalls().memfdCreate(name: name, flags: flags)
  }

  /// By default made by ``KernelSystemCalls``, as ``memfdCreate(name:flags:)`` is.
  public func truncate(_ fd: FileDescriptor, length: Int64) throws(Errno) {
    try KernelSystemCalls().truncate(fd, length: length)
  }

  /// By default the host's files (``KernelSystemCalls``); a simulated kernel answers for
  /// the sysfs and `/dev` of its own machine.
  public func directoryEntries(_ path: FilePath) throws(Errno) -> [String] {
    try KernelSystemCalls().directoryEntries(path)
  }

  /// By default the host's files, as ``directoryEntries(_:)``.
  public func readFile(_ path: FilePath, maximumBytes: Int) throws(Errno) -> [UInt8] {
    try KernelSystemCalls().readFile(path, maximumBytes: maximumBytes)
  }

  /// By default the host's files, as ``directoryEntries(_:)``.
  public func readLink(_ path: FilePath) throws(Errno) -> String {
    try KernelSystemCalls().readLink(path)
  }

  /// By default the host's files, as ``directoryEntries(_:)``.
  public func checkAccess(_ path: FilePath, mode: Int32) throws(Errno) {
    try KernelSystemCalls().checkAccess(path, mode: mode)
  }

  /// By default nothing is written (`EROFS`): a seam writes files only where it says so
  /// (``KernelSystemCalls`` the host's, a simulated kernel its machine's), so that a test
  /// double can never write the host's sysfs by leaving this out.
  public func writeFile(_ path: FilePath, bytes: [UInt8]) throws(Errno) {
    throw .readOnlyFileSystem
  }
}
