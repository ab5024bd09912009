using Grpc.Core;

namespace Mesh.ControlPlane.Security;

/// <summary>What one authenticator concluded: no credential of its kind, an identity, or a failure reason.</summary>
/// <param name="Token">The bootstrap token that proved the identity, when one did (the CA spends it and caps the TTL).</param>
internal readonly record struct AuthenticationOutcome(WorkloadIdentity? Identity, string? Failure, BootstrapToken? Token = null)
{
    public static AuthenticationOutcome NoCredential { get; } = new(null, null);

    public static AuthenticationOutcome Success(WorkloadIdentity identity) => new(identity, null);

    public static AuthenticationOutcome Success(BootstrapToken token) => new(token.Identity, null, token);

    public static AuthenticationOutcome Failed(string reason) => new(null, reason);
}

/// <summary>Proves who is calling the control plane; implementations are tried in registration order.</summary>
internal interface ICallerAuthenticator
{
    /// <summary>Short name used in error messages, e.g. "client certificate".</summary>
    string Name { get; }

    AuthenticationOutcome Authenticate(ServerCallContext context);
}

/// <summary>The TLS client certificate on the secure port, validated against the trust bundle and the SVID rules.</summary>
internal sealed class ClientCertificateAuthenticator(CertificateAuthority ca) : ICallerAuthenticator
{
    public string Name => "client certificate";

    public AuthenticationOutcome Authenticate(ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (certificate is null)
        {
            return AuthenticationOutcome.NoCredential;
        }

        var identity = ca.ValidateWorkloadCertificate(certificate, out var reason);
        return identity is null ? AuthenticationOutcome.Failed(reason) : AuthenticationOutcome.Success(identity);
    }
}

/// <summary>A bootstrap token in the <c>authorization: Bearer</c> metadata; a spent single-use token proves nothing.</summary>
internal sealed class BootstrapTokenAuthenticator(BootstrapTokens tokens, SpentTokens spent) : ICallerAuthenticator
{
    public string Name => "bearer token";

    public AuthenticationOutcome Authenticate(ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var header = context.RequestHeaders.GetValue("authorization");
        if (string.IsNullOrEmpty(header))
        {
            return AuthenticationOutcome.NoCredential;
        }

        const string Bearer = "Bearer ";
        if (!header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
        {
            return AuthenticationOutcome.Failed("authorization metadata must be 'Bearer <token>'");
        }

        var token = tokens.Validate(header[Bearer.Length..].Trim(), out var reason);
        if (token is null)
        {
            return AuthenticationOutcome.Failed(reason);
        }

        return !token.Reusable && spent.IsSpent(token.Jti)
            ? AuthenticationOutcome.Failed($"bearer token {token.Jti} was already used; bootstrap tokens are single-use unless minted as reusable. Mint a new one")
            : AuthenticationOutcome.Success(token);
    }
}

/// <summary>Runs the authenticators in order; the first identity wins, otherwise UNAUTHENTICATED naming every reason.</summary>
internal sealed class CallerAuthentication(IEnumerable<ICallerAuthenticator> authenticators)
{
    private readonly ICallerAuthenticator[] _authenticators = [.. authenticators];

    public WorkloadIdentity Authenticate(ServerCallContext context) => AuthenticateCaller(context).Identity!;

    /// <summary>Like <see cref="Authenticate"/>, with the bootstrap token when that is what proved the identity.</summary>
    public AuthenticationOutcome AuthenticateCaller(ServerCallContext context)
    {
        var failures = new List<string>();
        foreach (var authenticator in _authenticators)
        {
            var outcome = authenticator.Authenticate(context);
            if (outcome.Identity is not null)
            {
                return outcome;
            }

            if (outcome.Failure is not null)
            {
                failures.Add($"{authenticator.Name}: {outcome.Failure}");
            }
        }

        var message = failures.Count > 0
            ? "caller is not authenticated: " + string.Join("; ", failures)
            : $"caller is not authenticated: no credential; present a mesh workload certificate as the TLS client certificate or 'authorization: Bearer <bootstrap token>' ({string.Join(", ", _authenticators.Select(a => a.Name))})";
        throw new RpcException(new Status(StatusCode.Unauthenticated, message));
    }
}
