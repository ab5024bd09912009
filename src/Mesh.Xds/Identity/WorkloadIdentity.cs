namespace Mesh.Xds.Identity;

/// <summary>An Istio workload identity; the control plane certifies exactly this (never names from a CSR) and peers present it.</summary>
internal sealed record WorkloadIdentity(string TrustDomain, string Namespace, string ServiceAccount)
{
    /// <summary>Gets <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>.</summary>
    public string SpiffeId => $"{Identity.SpiffeId.Prefix}{TrustDomain}/ns/{Namespace}/sa/{ServiceAccount}";

    public override string ToString() => SpiffeId;
}
