using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Client.Security;

/// <summary>The client's form of the shared SVID check: against a <see cref="TrustBundle"/> (its roots, named by its source).</summary>
internal static class TrustBundleValidation
{
    extension(SvidValidator)
    {
        /// <summary>Validates a peer's leaf against <paramref name="bundle"/>; see <see cref="SvidValidator.TryValidate(X509Certificate2?, IEnumerable{X509Certificate2}, IEnumerable{X509Certificate2}, string, string, DateTimeOffset, out SpiffeId?, out string)"/>.</summary>
        public static bool TryValidate(
            X509Certificate2? leaf,
            IEnumerable<X509Certificate2> presented,
            TrustBundle bundle,
            string trustDomain,
            DateTimeOffset now,
            [NotNullWhen(true)] out SpiffeId? id,
            out string error)
        {
            ArgumentNullException.ThrowIfNull(bundle);
            return SvidValidator.TryValidate(leaf, presented, bundle.Roots, bundle.Source, trustDomain, now, out id, out error);
        }
    }
}
