using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;

namespace Mesh.ControlPlane.Admin;

/// <summary>
/// The admin API's bearer secret: 256 random bits in StateDirectory/admin-credential (mode 0600), made on the
/// first start and reused after. Whoever can read the state directory can mint tokens anyway (it holds the
/// signing key), so the file grants nothing new; a process that can only reach the admin port gets nothing.
/// </summary>
internal sealed class AdminCredential
{
    public const string FileName = "admin-credential";

    private readonly byte[] _hash;

    private AdminCredential(string path, byte[] hash, bool created)
    {
        Path = path;
        _hash = hash;
        Created = created;
    }

    public string Path { get; }

    /// <summary>True when this start made the file.</summary>
    public bool Created { get; }

    public static string FilePath(ControlPlaneOptions options) =>
        System.IO.Path.Combine(System.IO.Path.GetFullPath(options.StateDirectory), FileName);

    /// <summary>Loads the credential, creating it (0600 from the first byte) when missing.</summary>
    public static AdminCredential LoadOrCreate(ControlPlaneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var path = FilePath(options);
        var created = !File.Exists(path)
            && PrivateKeyFiles.TryCreate(path, Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32)) + "\n");
        PrivateKeyFiles.EnsureOwnerOnly(path);
        var secret = File.ReadAllText(path).Trim();
        if (secret.Length < 32)
        {
            throw new InvalidOperationException(
                $"Admin credential file {path} holds {secret.Length} characters; it needs at least 32. Delete it to have a new one made (then give tools the new value).");
        }

        return new AdminCredential(path, Hash(secret), created);
    }

    /// <summary>
    /// Checks an <c>Authorization</c> header value; null when it carries the secret, else why not. Both sides are
    /// hashed first, so the comparison is constant-time and does not reveal the secret's length.
    /// </summary>
    public string? Check(string? authorization)
    {
        const string Bearer = "Bearer ";
        if (string.IsNullOrEmpty(authorization))
        {
            return $"this admin endpoint needs 'Authorization: Bearer <admin credential>'; the credential is in {Path} (readable by the control plane's user only)";
        }

        if (!authorization.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
        {
            return "the Authorization header must be 'Bearer <admin credential>'";
        }

        var presented = Hash(authorization.AsSpan(Bearer.Length).Trim().ToString());
        return CryptographicOperations.FixedTimeEquals(presented, _hash)
            ? null
            : $"the admin credential is wrong; use the content of {Path}";
    }

    private static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));
}
