using Microsoft.Extensions.Configuration;

namespace Mesh.Client.Hosting;

/// <summary>
/// The <c>Mesh</c> section of the app's configuration (the <see cref="IConfiguration"/> in the container), registered by
/// <c>AddServiceMesh()</c> together with binding <see cref="ServiceMeshOptions"/> from it, so that its keys are checked too.
/// </summary>
internal sealed class ServiceMeshConfigurationSection(IConfiguration configuration)
{
    public IConfigurationSection Section { get; } = configuration.GetSection(ServiceMeshOptions.SectionName);
}
