using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Sidecar.Inbound;

/// <summary>
/// Envoy's <c>x-forwarded-client-cert</c> (XFCC) element for one mTLS hop, as Envoy's HTTP connection manager writes it
/// (envoyproxy.io, configuration/http/http_conn_man/headers, "x-forwarded-client-cert"): <c>By</c> is this proxy's URI SAN,
/// <c>Hash</c> the hex SHA-256 digest of the client's DER certificate, <c>URI</c> the client's URI SAN.
/// </summary>
internal static class ForwardedClientCert
{
    public const string HeaderName = "X-Forwarded-Client-Cert";

    /// <summary>Formats the element; values with Envoy's separators (<c>,</c> <c>;</c> <c>=</c>) or quotes are quoted.</summary>
    public static string Format(string by, X509Certificate2 peer, string peerUri)
    {
        ArgumentNullException.ThrowIfNull(by);
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(peerUri);
        return $"By={Value(by)};Hash={Hash(peer)};URI={Value(peerUri)}";
    }

    /// <summary>The lowercase hex SHA-256 of the certificate's DER encoding.</summary>
    public static string Hash(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return Convert.ToHexStringLower(SHA256.HashData(certificate.RawData));
    }

    private static string Value(string value) =>
        value.AsSpan().IndexOfAny(",;=\"") >= 0 ? "\"" + value.Replace("\"", "\\\"", StringComparison.Ordinal) + "\"" : value;
}
